// Verifies the conformance suite's offline vectors (`gateway conformance vectors --out DIR`) with panva/jose,
// as an integrator's receiver on Node.js would: the key comes only from the trust list by kid, must be a
// `message` key, valid at the index's verify_at (status, revoked_at, not_before, not_after), and its
// registered alg decides which header algs jose may accept (docs/protocol.md §3.2, §10.4).
// Used by tests/test_conformance_vectors.py.
//
//   node verify_vectors.mjs DIR  ->  prints [{"id": ..., "verified": true|false, "error": "..."}] in index order

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { compactVerify, importJWK } from "jose";

const ALLOWED = { Ed25519: ["Ed25519", "EdDSA"], ES256: ["ES256"] };

function header(compact) {
  const segment = compact.split(".")[0];
  return JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
}

function trustedKey(keys, kid, at) {
  const key = keys.find((candidate) => candidate.kid === kid);
  if (key === undefined) throw new Error("kid not in the trust list");
  if (key.use !== "message") throw new Error(`a ${key.use} key cannot sign a message`);
  if (key.status === "revoked" && Date.parse(key.revoked_at) <= at) throw new Error("key revoked");
  if (Date.parse(key.not_after) <= at) throw new Error("key expired");
  if (Date.parse(key.not_before) > at) throw new Error("key not yet valid");
  return key;
}

async function verify(compact, keys, at) {
  const { kid } = header(compact);
  const key = trustedKey(keys, kid, at);
  const { alg: _ignored, ...jwk } = key.jwk;
  await compactVerify(compact, (protectedHeader) => importJWK(jwk, protectedHeader.alg), { algorithms: ALLOWED[key.alg] });
}

const folder = process.argv[2];
const index = JSON.parse(readFileSync(join(folder, "index.json"), "utf8"));
const keys = JSON.parse(readFileSync(join(folder, index.trust_list), "utf8")).keys;
const at = Date.parse(index.verify_at);
const results = [];
for (const vector of index.vectors) {
  const compact = readFileSync(join(folder, vector.file), "latin1");
  try {
    await verify(compact, keys, at);
    results.push({ id: vector.id, verified: true });
  } catch (error) {
    results.push({ id: vector.id, verified: false, error: String(error && error.message ? error.message : error) });
  }
}
process.stdout.write(JSON.stringify(results) + "\n");
