// Sender-key vectors from libsignal itself (@signalapp/libsignal-client, Node.js).
// Run by regenerate.py, never by the tests: node generate.mjs OURS.json OUT.json
//   1. libsignal takes OUR distribution message and decrypts OUR group messages (it must
//      give back our plaintexts, or this fails and writes nothing);
//   2. libsignal makes its own chain, a rotation to a second chain, and messages on both,
//      which the tests decrypt with our code (out of order, across the rotation).
import * as S from "@signalapp/libsignal-client";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

class Store extends S.SenderKeyStore {
  constructor() { super(); this.records = new Map(); }
  async saveSenderKey(sender, id, record) { this.records.set(`${sender}/${id}`, record); }
  async getSenderKey(sender, id) { return this.records.get(`${sender}/${id}`) ?? null; }
}
const hex = (b) => Buffer.from(b).toString("hex");
const [oursPath, outPath] = process.argv.slice(2);
const ours = JSON.parse(readFileSync(oursPath, "utf8"));

// 1. ours → libsignal
const bob = new Store();
const sender = S.ProtocolAddress.new(ours.sender.name, ours.sender.device);
await S.processSenderKeyDistributionMessage(
  sender, S.SenderKeyDistributionMessage.deserialize(Buffer.from(ours.distribution, "hex")), bob);
for (const i of ours.order) {
  const m = ours.messages[i];
  const plain = await S.groupDecrypt(sender, bob, Buffer.from(m.message, "hex"));
  if (hex(plain) !== m.plaintext) throw new Error(`libsignal decrypted our message ${i} to ${hex(plain)}`);
}

// 2. libsignal → ours
const alice = new Store();
const me = S.ProtocolAddress.new("alice", 1);
const dist = "5e11de45-0b1e-4c0d-9e2a-7a1d00000001";
const first = await S.SenderKeyDistributionMessage.create(me, dist, alice);
const plain = (i) => Buffer.from(`group message ${i} ` + "x".repeat(i % 17));
const firstMessages = [];
for (let i = 0; i < 30; i++) {
  const c = await S.groupEncrypt(me, dist, alice, plain(i));
  firstMessages.push({ message: hex(c.serialize()), plaintext: hex(plain(i)) });
}
alice.records.clear(); // a rotation: a new chain (as after a member left)
const second = await S.SenderKeyDistributionMessage.create(me, dist, alice);
const secondMessages = [];
for (let i = 0; i < 3; i++) {
  const c = await S.groupEncrypt(me, dist, alice, plain(100 + i));
  secondMessages.push({ message: hex(c.serialize()), plaintext: hex(plain(100 + i)) });
}
const version = createRequire(import.meta.url)("@signalapp/libsignal-client/package.json").version;
writeFileSync(outPath, JSON.stringify({
  source: `@signalapp/libsignal-client ${version} (Node.js ${process.version}), by tests/vectors/libsignal/senderkey.mjs`,
  ours: { ...ours, libsignal_decrypted: true },
  libsignal: {
    sender: { name: "alice", device: 1 }, distribution_id: dist,
    first: { distribution: hex(first.serialize()), chain_id: first.chainId(), messages: firstMessages },
    second: { distribution: hex(second.serialize()), chain_id: second.chainId(), messages: secondMessages },
  },
}, null, 1) + "\n");
