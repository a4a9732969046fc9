// Brings the replica set to what the site wants, run by the setup Job as
// `mongosh --nodb --quiet /setup/setup.js`. Every run first asks each member (hello) and
// the primary (replSetGetConfig, replSetGetStatus) what is there, and changes only what
// replica-set.js decides is missing: initiate when no member is initiated, add missing
// members one reconfig at a time, never initiate again. Then the default write concern
// (majority) and the users, on the primary.
//
// Exit status: 0 done; 1 not yet (the Job retries); 2 refused (a member of another
// replica set, or not started with --replSet): the Job's podFailurePolicy fails at once,
// since retrying cannot fix it and a human must look.
//
// Passwords come from the environment (the Secret), never from a command line.
load("/setup/replica-set.js");

const env = process.env;
const want = { name: env.REPLICA_SET, hosts: env.MEMBERS.split(",") };
const ROUNDS = 30;
const PAUSE_MS = 2000;

function connect(host) {
  // One member, not the set: hello must come from that member itself.
  const conn = new Mongo(`mongodb://${host}/?directConnection=true&serverSelectionTimeoutMS=5000`);
  return conn;
}

function admin(conn) {
  const db = conn.getDB("admin");
  db.auth("root", env.MONGODB_ROOT_PASSWORD);
  return db;
}

function ask(host) {
  try {
    return connect(host).getDB("admin").runCommand({ hello: 1 });
  } catch (error) {
    print(`${host}: no answer (${error.message})`);
    return null;
  }
}

function checked(answer, what) {
  if (answer.ok !== 1) {
    throw new Error(`${what} failed: ${JSON.stringify(answer)}`);
  }
  return answer;
}

function observe() {
  const hello = {};
  for (const host of want.hosts) {
    hello[host] = ask(host);
  }
  return { hello };
}

function settle() {
  let seen = observe();
  for (let round = 0; round < ROUNDS; round += 1) {
    const plan = planReplicaSet(want, seen);
    print(`${plan.action}: ${plan.reason}`);
    if (plan.action === "done") {
      return { plan, primary: seen.primary };
    }
    if (plan.action === "refuse") {
      quit(2);
      return null;
    }
    if (plan.action === "read") {
      const db = admin(connect(plan.from));
      seen = {
        ...seen,
        primary: plan.from,
        config: checked(db.runCommand({ replSetGetConfig: 1 }), "replSetGetConfig").config,
        status: checked(db.runCommand({ replSetGetStatus: 1 }), "replSetGetStatus"),
      };
      continue;
    }
    if (plan.action === "initiate") {
      checked(admin(connect(plan.on)).runCommand({ replSetInitiate: plan.config }), "replSetInitiate");
    } else if (plan.action === "reconfig") {
      const db = admin(connect(seen.primary));
      checked(db.runCommand({ replSetReconfig: plan.config }), "replSetReconfig");
    }
    // After a change, or while waiting, look again from the start.
    sleep(PAUSE_MS);
    seen = observe();
  }
  print(`not settled after ${ROUNDS} rounds; the Job will run again`);
  quit(1);
  return null;
}

// settle() returns only when done: refusing and giving up quit the shell.
const settled = settle();

if (settled.plan.unhealthy.length > 0) {
  print(`not healthy now: ${settled.plan.unhealthy.join(", ")}`);
}
const primary = admin(connect(settled.primary));
const concern = planWriteConcern(checked(primary.runCommand({ getDefaultRWConcern: 1 }), "getDefaultRWConcern"));
if (concern) {
  checked(primary.runCommand(concern), "setDefaultRWConcern");
  print("default write concern set to majority");
}
const databases = env.OPENEDX_DATABASES.split(",");
const users = [
  {
    user: env.OPENEDX_USER,
    pwd: env.MONGODB_OPENEDX_PASSWORD,
    roles: databases.map((db) => ({ role: "readWrite", db })),
  },
  { user: "backup", pwd: env.MONGODB_BACKUP_PASSWORD, roles: [{ role: "backup", db: "admin" }] },
];
const existing = checked(primary.runCommand({ usersInfo: users.map((user) => user.user) }), "usersInfo");
for (const command of planUsers(existing, users)) {
  checked(primary.runCommand({ ...command, writeConcern: { w: "majority" } }), "user");
  print(`${command.createUser ? "created" : "updated"} user ${command.createUser || command.updateUser}`);
}
print(`${want.name}: ${want.hosts.length} members, write concern majority, users in place`);
