// Sealed-sender v1 vectors from libsignal itself (@signalapp/libsignal-client, Node.js).
// Run by regenerate.py, never by the tests: node sealed.mjs OURS.json OUT.json
//   1. libsignal opens OUR sealed message (its recipient key is fixed), checks what is inside,
//      and validates OUR certificates against OUR trust root (and not after their expiry);
//   2. libsignal seals a message of its own, with certificates of its own, to OUR recipient
//      identity key, for the tests to open.
import * as S from "@signalapp/libsignal-client";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const hex = (b) => Buffer.from(b).toString("hex");
const bin = (h) => Buffer.from(h, "hex");
class Identities extends S.IdentityKeyStore {
  constructor(own, peers) { super(); this.own = own; this.peers = peers; }
  async getIdentityKey() { return this.own; }
  async getLocalRegistrationId() { return 1; }
  async saveIdentity() { return S.IdentityChange.NewOrUnchanged; }
  async isTrustedIdentity() { return true; }
  async getIdentity(name) { return this.peers.get(name.toString()) ?? null; }
}
const check = (ok, what) => { if (!ok) throw new Error(`libsignal disagrees: ${what}`); };
const [oursPath, outPath] = process.argv.slice(2);
const ours = JSON.parse(readFileSync(oursPath, "utf8"));

// 1. ours → libsignal
const recipient = S.PrivateKey.deserialize(bin(ours.recipient_private));
check(hex(recipient.getPublicKey().serialize()) === ours.recipient_public, "the recipient's public key");
const usmc = await S.sealedSenderDecryptToUsmc(bin(ours.sealed), new Identities(recipient, new Map()));
check(hex(usmc.contents()) === ours.content, "the content");
check(usmc.msgType() === ours.msg_type, "the type");
check(usmc.contentHint() === ours.content_hint, "the content hint");
check(hex(usmc.groupId()) === ours.group_id, "the group id");
const cert = usmc.senderCertificate();
check(cert.senderUuid() === ours.account && cert.senderDeviceId() === ours.device, "the sender");
check(hex(cert.serialize()) === ours.certificate, "the certificate's bytes");
const root = S.PublicKey.deserialize(bin(ours.trust_root_public));
check(cert.validate(root, ours.expires_ms - 1), "our certificate validates");
check(!cert.validate(root, ours.expires_ms + 1), "our certificate expires");

// 1b. our multi-recipient (v2) message: each recipient's received form opens in libsignal
for (const one of ours.v2_received) {
  const key = S.PrivateKey.deserialize(bin(one.private));
  const got = await S.sealedSenderDecryptToUsmc(bin(one.message), new Identities(key, new Map()));
  check(hex(got.contents()) === ours.content, "the v2 content");
  check(hex(got.senderCertificate().serialize()) === ours.certificate, "the v2 certificate");
}

// 2. libsignal → ours
const trust = S.PrivateKey.deserialize(Buffer.alloc(32, 0x01));
const serverKey = S.PrivateKey.deserialize(Buffer.alloc(32, 0x02));
const sender = S.PrivateKey.deserialize(Buffer.alloc(32, 0x03));
const server = S.ServerCertificate.new(7, serverKey.getPublicKey(), trust);
const expires = 1800000000000;
const theirCert = S.SenderCertificate.new("alice", null, 1, sender.getPublicKey(), expires, server, serverKey);
const to = S.ProtocolAddress.new("bob", 1);
const peers = new Map([[to.toString(), S.PublicKey.deserialize(bin(ours.our_identity_public))]]);
const distribution = "5e11de45-0b1e-4c0d-9e2a-7a1d00000002";
const keys = new (class extends S.SenderKeyStore {
  constructor() { super(); this.r = new Map(); }
  async saveSenderKey(s, id, rec) { this.r.set(`${s}/${id}`, rec); }
  async getSenderKey(s, id) { return this.r.get(`${s}/${id}`) ?? null; }
})();
const me = S.ProtocolAddress.new("alice", 1);
await S.SenderKeyDistributionMessage.create(me, distribution, keys);
const inner = await S.groupEncrypt(me, distribution, keys, Buffer.from("sealed group message"));
const groupId = Buffer.from("tidings group 01");
const content = S.UnidentifiedSenderMessageContent.new(inner, theirCert, 1, groupId);
const sealed = await S.sealedSenderEncrypt(content, to, new Identities(sender, peers));
const version = createRequire(import.meta.url)("@signalapp/libsignal-client/package.json").version;
writeFileSync(outPath, JSON.stringify({
  source: `@signalapp/libsignal-client ${version} (Node.js ${process.version}), by tests/vectors/libsignal/sealed.mjs`,
  ours: { ...ours, libsignal_opened: true, libsignal_opened_v2: true, libsignal_validated: true },
  libsignal: {
    sealed: hex(sealed), trust_root_public: hex(trust.getPublicKey().serialize()),
    server_key_public: hex(serverKey.getPublicKey().serialize()),
    sender_identity_public: hex(sender.getPublicKey().serialize()),
    account: "alice", device: 1, expires_ms: expires, msg_type: inner.type(),
    content: hex(inner.serialize()), content_hint: 1, group_id: hex(groupId),
    certificate: hex(theirCert.serialize()),
  },
}, null, 1) + "\n");
