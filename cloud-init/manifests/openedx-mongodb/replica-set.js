// The replica-set setup's decisions, as pure functions of what the members answered:
// no I/O here, so tests/integration/test_mongodb_replica_set.py runs them with node on
// answers shaped like mongod's, and setup.js (run by the mongo image's mongosh, which is
// Node.js too) acts on them.
//
// Commands whose answers are read (MongoDB 7.0):
//   hello             https://www.mongodb.com/docs/v7.0/reference/command/hello/
//     A member started with --replSet but never initiated answers isreplicaset: true and
//     no setName (src/mongo/db/repl/hello_response.cpp, markAsNoConfig / addToBSON).
//   replSetGetConfig  https://www.mongodb.com/docs/v7.0/reference/command/replSetGetConfig/
//   replSetGetStatus  https://www.mongodb.com/docs/v7.0/reference/command/replSetGetStatus/
//   getDefaultRWConcern https://www.mongodb.com/docs/v7.0/reference/command/getDefaultRWConcern/
//   usersInfo         https://www.mongodb.com/docs/v7.0/reference/command/usersInfo/
// and the commands decided on:
//   replSetInitiate   https://www.mongodb.com/docs/v7.0/reference/command/replSetInitiate/
//   replSetReconfig   https://www.mongodb.com/docs/v7.0/reference/command/replSetReconfig/
//     (a reconfig may add at most one voting member at a time, and `version` must grow)
//   setDefaultRWConcern https://www.mongodb.com/docs/v7.0/reference/command/setDefaultRWConcern/
//   createUser / updateUser

// Healthy member states: https://www.mongodb.com/docs/v7.0/reference/replica-states/
const HEALTHY_STATES = ["PRIMARY", "SECONDARY"];

// The next step towards `want` ({name, hosts}), from `seen`:
//   hello:  host -> that member's hello answer, or null when it did not answer;
//   config: the primary's replSetGetConfig().config, once asked for (else absent);
//   status: the primary's replSetGetStatus answer, with config.
// Returns {action, reason, ...}: "initiate" (on, config), "read" (from), "reconfig"
// (config), "wait", "refuse" or "done" (unhealthy: member names).
function planReplicaSet(want, seen) {
  const answered = want.hosts.filter((host) => seen.hello[host]);
  const silent = want.hosts.filter((host) => !seen.hello[host]);
  for (const host of answered) {
    const setName = seen.hello[host].setName;
    if (setName !== undefined && setName !== want.name) {
      return refuse(`${host} belongs to replica set ${setName}, not ${want.name}`);
    }
    if (setName === undefined && seen.hello[host].isreplicaset !== true) {
      return refuse(`${host} was not started with --replSet ${want.name}`);
    }
  }
  const initiated = answered.filter((host) => seen.hello[host].setName === want.name);
  if (initiated.length === 0) {
    // Never initiate while a member is silent: it may hold a config of its own, and
    // initiating beside it would make a second replica set of the same name.
    if (silent.length > 0) {
      return wait(`no member is initiated, and ${silent.join(", ")} did not answer`);
    }
    return {
      action: "initiate",
      reason: `no member of ${want.name} is initiated yet`,
      on: want.hosts[0],
      config: {
        _id: want.name,
        members: want.hosts.map((host, index) => ({ _id: index, host })),
      },
    };
  }
  const primary =
    initiated.find((host) => seen.hello[host].isWritablePrimary === true) ||
    initiated.map((host) => seen.hello[host].primary).find((host) => want.hosts.includes(host));
  if (!primary || !seen.hello[primary]) {
    return wait(`${want.name} has no primary that answers yet`);
  }
  if (!seen.config) {
    return { action: "read", reason: `${primary} is the primary`, from: primary };
  }
  if (seen.config._id !== want.name) {
    return refuse(`the primary's config is for replica set ${seen.config._id}, not ${want.name}`);
  }
  const listed = seen.config.members.map((member) => member.host);
  const missing = want.hosts.filter((host) => !listed.includes(host));
  if (missing.length === 0) {
    const unhealthy = (seen.status ? seen.status.members : [])
      .filter((member) => member.health !== 1 || !HEALTHY_STATES.includes(member.stateStr))
      .map((member) => member.name);
    return {
      action: "done",
      reason: `every member is in ${want.name}'s config (version ${seen.config.version})`,
      unhealthy,
    };
  }
  // One at a time: the server refuses a reconfig that adds more than one voting member.
  const ready = missing.filter((host) => seen.hello[host] && seen.hello[host].setName === undefined);
  if (ready.length === 0) {
    return wait(`${missing.join(", ")} missing from the config, and none answers as uninitiated`);
  }
  const next = Math.max(...seen.config.members.map((member) => member._id)) + 1;
  return {
    action: "reconfig",
    reason: `${ready[0]} is missing from ${want.name}'s config`,
    config: {
      ...seen.config,
      version: seen.config.version + 1,
      members: [...seen.config.members, { _id: next, host: ready[0] }],
    },
  };
}

// The cluster-wide default write concern, unless it is majority already (explicitly set:
// the implicit default depends on arbiters and may change between releases).
function planWriteConcern(answer) {
  const concern = answer.defaultWriteConcern;
  if (concern && concern.w === "majority" && answer.defaultWriteConcernSource !== "implicit") {
    return null;
  }
  return { setDefaultRWConcern: 1, defaultWriteConcern: { w: "majority" } };
}

// createUser for each wanted user usersInfo did not list, updateUser (password and roles,
// which may have changed with the build) for the others.
function planUsers(usersInfo, wanted) {
  const existing = usersInfo.users.map((user) => user.user);
  return wanted.map((user) =>
    existing.includes(user.user)
      ? { updateUser: user.user, pwd: user.pwd, roles: user.roles }
      : { createUser: user.user, pwd: user.pwd, roles: user.roles },
  );
}

function refuse(reason) {
  return { action: "refuse", reason };
}

function wait(reason) {
  return { action: "wait", reason };
}

if (typeof module !== "undefined" && module.exports) {
  module.exports = { planReplicaSet, planWriteConcern, planUsers };
}
