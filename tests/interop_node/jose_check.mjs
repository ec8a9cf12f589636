// Cross-check of the JWS profile (docs/protocol.md §3) with panva/jose on Node.js.
// Used by tests/protocol/test_node_interop.py; nothing else depends on it.
//
// Reads one JSON request from stdin, or a JSON array of requests (one node start
// for many cases), and prints one JSON result, or an array of results in order:
//
//   {"op": "verify", "jws": "<compact>", "jwk": {<public JWK>}, "algorithms": ["Ed25519", ...]}
//     -> {"payload": "<base64url of the exact payload bytes>", "protectedHeader": {...}}
//   {"op": "sign", "jwk": {<private JWK>}, "alg": "...", "kid": "...", "typ": "...", "payload": "<base64url>"}
//     -> {"jws": "<compact>"}   (protected header exactly {alg, kid, typ}, in that order)
//
// A request that fails gives {"error": "<message>", "code": "<jose error code or name>"}.
// The exit code is 1 when the output holds an error (for an array: any of its
// results, or unreadable input), else 0.
//
// The JWK's optional "alg" member is not given to jose: jose binds a JWK's "alg" to
// the header "alg" exactly, while the profile lets a key registered as Ed25519 verify
// the legacy "EdDSA" name (PROTO-3.2-2). The binding is done by the caller's
// "algorithms" list (verify) and "alg" (sign) instead, both required.

import { CompactSign, compactVerify, importJWK } from "jose";

const BASE64URL = /^[A-Za-z0-9_-]*$/;

function fromBase64url(text, what) {
  if (typeof text !== "string" || !BASE64URL.test(text)) {
    throw new TypeError(`${what} must be a base64url string`);
  }
  const bytes = Buffer.from(text, "base64url");
  if (bytes.toString("base64url") !== text) {
    throw new TypeError(`${what} is not canonical base64url`);
  }
  return new Uint8Array(bytes);
}

function keyWithoutAlg(jwk) {
  if (jwk === null || typeof jwk !== "object" || Array.isArray(jwk)) {
    throw new TypeError("jwk must be a JSON object");
  }
  const { alg: _ignored, ...rest } = jwk;
  return rest;
}

function requireString(request, name) {
  if (typeof request[name] !== "string" || request[name] === "") {
    throw new TypeError(`${name} must be a non-empty string`);
  }
  return request[name];
}

async function verify(request) {
  const compact = requireString(request, "jws");
  const { algorithms } = request;
  if (!Array.isArray(algorithms) || algorithms.length === 0 || !algorithms.every((a) => typeof a === "string")) {
    throw new TypeError("algorithms must be a non-empty list of strings");
  }
  const jwk = keyWithoutAlg(request.jwk);
  if ("d" in jwk) {
    throw new TypeError("verify takes a public JWK");
  }
  // jose checks the header alg against `algorithms` before it asks for the key.
  const { payload, protectedHeader } = await compactVerify(
    compact,
    (header) => importJWK(jwk, header.alg),
    { algorithms },
  );
  return { payload: Buffer.from(payload).toString("base64url"), protectedHeader };
}

async function sign(request) {
  const alg = requireString(request, "alg");
  const kid = requireString(request, "kid");
  const typ = requireString(request, "typ");
  const payload = fromBase64url(request.payload, "payload");
  const key = await importJWK(keyWithoutAlg(request.jwk), alg);
  const jws = await new CompactSign(payload).setProtectedHeader({ alg, kid, typ }).sign(key);
  return { jws };
}

const OPERATIONS = { verify, sign };

async function answer(request) {
  try {
    if (request === null || typeof request !== "object" || Array.isArray(request)) {
      throw new TypeError("a request must be a JSON object");
    }
    const operation = OPERATIONS[request.op];
    if (operation === undefined || !Object.hasOwn(OPERATIONS, request.op)) {
      throw new TypeError('op must be "verify" or "sign"');
    }
    return await operation(request);
  } catch (error) {
    return { error: String(error?.message ?? error), code: String(error?.code ?? error?.name ?? "Error") };
  }
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function main() {
  let input;
  try {
    input = JSON.parse(await readStdin());
  } catch (error) {
    return { output: { error: `stdin is not JSON: ${error.message}`, code: "ERR_INPUT" }, failed: true };
  }
  if (Array.isArray(input)) {
    const results = [];
    for (const request of input) {
      results.push(await answer(request));
    }
    return { output: results, failed: results.some((result) => "error" in result) };
  }
  const result = await answer(input);
  return { output: result, failed: "error" in result };
}

const { output, failed } = await main();
process.stdout.write(JSON.stringify(output) + "\n");
process.exitCode = failed ? 1 : 0;
