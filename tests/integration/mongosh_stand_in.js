// Runs the setup Job's setup.js under node, in place of mongosh and three mongod: the
// members answer from a scenario (JSON on stdin) shaped like mongod 7.0's answers, and
// replSetInitiate / replSetReconfig change those answers as mongod would (every member of
// the new config reports the set's name; the member initiated on becomes primary).
// Prints one JSON line: the commands each member received and the exit status.
"use strict";
const fs = require("fs");
const vm = require("vm");

const [setupPath, libraryPath] = process.argv.slice(2);
const scenario = JSON.parse(fs.readFileSync(0, "utf8"));
const members = scenario.members; // host -> {hello, config?, status?, rwConcern?, users?}
const sent = [];

class Exit extends Error {
  constructor(code) {
    super(`quit(${code})`);
    this.code = code;
  }
}

function helloOf(host) {
  const member = members[host];
  if (!member || member.hello === null) {
    throw new Error(`connection to ${host} timed out`);
  }
  return member.hello;
}

function applyConfig(config, primary) {
  const hosts = config.members.map((member) => member.host);
  for (const host of hosts) {
    const member = members[host];
    if (!member || member.hello === null) continue;
    member.hello = {
      ...member.hello,
      setName: config._id,
      setVersion: config.version,
      hosts,
      primary,
      isWritablePrimary: host === primary,
      secondary: host !== primary,
    };
    delete member.hello.isreplicaset;
    delete member.hello.info;
  }
  members[primary].config = config;
  members[primary].status = {
    set: config._id,
    myState: 1,
    ok: 1,
    members: hosts.map((host, index) => ({
      _id: index,
      name: host,
      health: members[host] && members[host].hello !== null ? 1 : 0,
      stateStr: host === primary ? "PRIMARY" : "SECONDARY",
    })),
  };
}

function run(host, authed, command) {
  const name = Object.keys(command)[0];
  sent.push({ host, command: name, body: command });
  const member = members[host];
  if (name === "hello") return helloOf(host);
  if (!authed) return { ok: 0, code: 13, codeName: "Unauthorized" };
  switch (name) {
    case "replSetGetConfig":
      return { ok: 1, config: member.config };
    case "replSetGetStatus":
      return member.status;
    case "replSetInitiate":
      applyConfig({ ...command.replSetInitiate, version: 1, term: 1 }, host);
      return { ok: 1 };
    case "replSetReconfig":
      if (command.replSetReconfig.version <= member.config.version) {
        return { ok: 0, code: 103, codeName: "NewReplicaSetConfigurationIncompatible" };
      }
      applyConfig(command.replSetReconfig, host);
      return { ok: 1 };
    case "getDefaultRWConcern":
      return member.rwConcern || { defaultWriteConcernSource: "implicit", ok: 1 };
    case "setDefaultRWConcern":
      member.rwConcern = { defaultWriteConcern: command.defaultWriteConcern, ok: 1 };
      return { ok: 1 };
    case "usersInfo":
      return { users: (member.users || []).map((user) => ({ user, db: "admin" })), ok: 1 };
    case "createUser":
      member.users = [...(member.users || []), command.createUser];
      return { ok: 1 };
    case "updateUser":
      return { ok: 1 };
    default:
      return { ok: 0, errmsg: `the stand-in does not know ${name}` };
  }
}

class Mongo {
  constructor(uri) {
    this.host = uri.replace(/^mongodb:\/\//, "").replace(/\/.*$/, "");
    helloOf(this.host); // connecting fails as mongosh's does, for a member that is down
  }
  getDB(name) {
    const host = this.host;
    let authed = false;
    return {
      auth(user, pwd) {
        if (user !== "root" || pwd !== scenario.env.MONGODB_ROOT_PASSWORD) throw new Error("Authentication failed");
        authed = true;
        return { ok: 1 };
      },
      runCommand(command) {
        if (name !== "admin") throw new Error("setup.js speaks to the admin database only");
        return run(host, authed, command);
      },
    };
  }
}

const context = {
  Mongo,
  print: (text) => process.stderr.write(`${text}\n`),
  sleep: () => {},
  quit: (code) => {
    throw new Exit(code);
  },
  process: { env: scenario.env },
  module: undefined,
};
context.load = (path) => {
  if (path !== "/setup/replica-set.js") throw new Error(`load(${path})`);
  vm.runInContext(fs.readFileSync(libraryPath, "utf8"), context, { filename: libraryPath });
};
vm.createContext(context);
let code = 0;
try {
  vm.runInContext(fs.readFileSync(setupPath, "utf8"), context, { filename: setupPath });
} catch (error) {
  if (!(error instanceof Exit)) throw error;
  code = error.code;
}
process.stdout.write(`${JSON.stringify({ code, sent, members })}\n`);
