// The entry page's own check of a ledger entry, in the browser, with WebCrypto (docs/console.md, "Entry page").
//
// From the canonical bytes it recomputes the leaf hash (RFC 9162 §2.1.1: SHA-256(0x00 || entry)),
// from the inclusion proof the root (RFC 9162 §2.1.3.2), and compares it with the root of the
// signed checkpoint; it verifies the checkpoint's Ed25519 note signature by the log key
// (c2sp.org/signed-note) and the witnesses' cosignature/v1 signatures against the quorum
// (c2sp.org/tlog-cosignature), with the keys the console is configured with; and it compares
// each key's fingerprint (SHA-256 of its vkey text) with the ones the officer pinned at
// enrolment. The page says "verified" only if every check passed here, in this script.
"use strict";

(function () {
  const section = document.getElementById("proof");
  if (!section) return;

  const utf8 = (text) => new TextEncoder().encode(text);
  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const part of parts) { out.set(part, at); at += part.length; }
    return out;
  };
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));

  function base64(text) {
    // Canonical padded base64 only (RFC 4648 §4), as the note formats require.
    if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
      throw new Error("not canonical base64");
    }
    const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
    if (btoa(String.fromCharCode(...bytes)) !== text) throw new Error("not canonical base64");
    return bytes;
  }

  // RFC 8785 for entry-shaped values (ASCII names, strings, integers, booleans, null).
  function canonical(value) {
    if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
    if (value !== null && typeof value === "object") {
      return "{" + Object.keys(value).sort().map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
    }
    return JSON.stringify(value);
  }

  const bitLength = (n) => { let bits = 0n; while (n > 0n) { bits += 1n; n >>= 1n; } return bits; };
  const bitCount = (n) => { let c = 0; while (n > 0n) { c += Number(n & 1n); n >>= 1n; } return c; };

  async function nodeHash(left, right) { return sha256(concat(new Uint8Array([1]), left, right)); }

  // RFC 9162 §2.1.3.2: the root an inclusion proof implies. Requires 0 <= index < size.
  async function rootFromInclusion(leaf, index, size, proof) {
    if (!(0n <= index && index < size)) throw new Error(`leaf index ${index} is outside tree size ${size}`);
    const inner = bitLength(index ^ (size - 1n));
    const border = bitCount(index >> inner);
    if (proof.length !== Number(inner) + border) throw new Error(`wrong proof size ${proof.length}, want ${Number(inner) + border}`);
    let node = leaf;
    for (let level = 0n; level < inner; level++) {
      const sibling = proof[Number(level)];
      node = (index >> level) & 1n ? await nodeHash(sibling, node) : await nodeHash(node, sibling);
    }
    for (const sibling of proof.slice(Number(inner))) node = await nodeHash(sibling, node);
    return node;
  }

  // c2sp.org/signed-note verifier key: name+hex(key id)+base64(type || public key).
  async function parseVkey(vkey) {
    const first = vkey.indexOf("+"), second = vkey.indexOf("+", first + 1);
    if (first < 0 || second < 0) throw new Error("a vkey is name+keyid+key");
    const name = vkey.slice(0, first), keyIdHex = vkey.slice(first + 1, second), material = vkey.slice(second + 1);
    const raw = base64(material);
    const type = raw[0], publicKey = raw.slice(1);
    const want = (await sha256(concat(utf8(name), new Uint8Array([0x0a, type]), publicKey))).slice(0, 4);
    if (hex(want) !== keyIdHex || publicKey.length !== 32) throw new Error(`vkey ${name} does not match its key id`);
    const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    return { vkey, name, keyId: want, type, key, fingerprint: hex(await sha256(utf8(vkey))) };
  }

  function parseNote(note) {
    const split = note.lastIndexOf("\n\n");
    if (!note.endsWith("\n") || split < 0) throw new Error("not a signed note");
    const text = note.slice(0, split + 1);
    const signatures = note.slice(split + 2, -1).split("\n").map((line) => {
      if (!line.startsWith("\u2014 ")) throw new Error("bad signature line");
      const [name, encoded] = line.slice(2).split(" ");
      const raw = base64(encoded);
      return { name, keyId: raw.slice(0, 4), data: raw.slice(4) };
    });
    return { text, signatures };
  }

  const verifyEd25519 = (key, signature, message) => crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
  const names = (key, sig) => sig.name === key.name && equal(sig.keyId, key.keyId);

  function show(id, ok, value) {
    const item = document.getElementById(id);
    item.dataset.ok = ok ? "true" : "false";
    item.querySelector(".result").textContent = ok ? section.dataset.verified : section.dataset.failed;
    item.querySelector(".value").textContent = value;
  }

  async function check() {
    const answer = await fetch(section.dataset.proofUrl, { credentials: "same-origin", cache: "no-store" });
    if (!answer.ok) throw new Error(`proof request answered ${answer.status}`);
    const doc = await answer.json();
    const results = [];
    const record = (id, ok, value) => { show(id, ok, value); results.push(ok); };

    // 1. The leaf hash, from the canonical bytes (which must be the canonical form of their own JSON).
    const entry = base64(doc.entry);
    const leaf = await sha256(concat(new Uint8Array([0]), entry));
    const text = new TextDecoder("utf-8", { fatal: true }).decode(entry);
    const isCanonical = canonical(JSON.parse(text)) === text && document.getElementById("canonical").textContent === text;
    record("check-leaf", isCanonical, hex(leaf));

    // Keys from the console's configuration, and their fingerprints against the officer's pins.
    const logKey = doc.log_key ? await parseVkey(doc.log_key) : null;
    const witnesses = await Promise.all(doc.witness_keys.map(parseVkey));
    const rows = document.getElementById("key-rows");
    let allPinned = logKey !== null;
    for (const key of [logKey, ...witnesses].filter(Boolean)) {
      const pinned = doc.pinned.includes(key.fingerprint);
      allPinned = allPinned && pinned;
      const row = rows.insertRow();
      row.insertCell().textContent = key.vkey;
      row.insertCell().textContent = key.fingerprint;
      const cell = row.insertCell();
      cell.textContent = pinned ? "\u2713" : "\u2717";
      cell.className = pinned ? "ok" : "bad";
    }

    const quorumPins = doc.pinned.filter((item) => item.startsWith("quorum:")).map((item) => Number(item.slice(7)));
    const pinnedQuorum = Math.max(0, ...quorumPins);
    const quorumPinned = quorumPins.length === 1 && doc.quorum >= pinnedQuorum;

    if (!doc.checkpoint) {
      for (const id of ["check-root", "check-log", "check-quorum"]) record(id, false, section.dataset.notCheckpointed);
      record("check-pins", allPinned && quorumPinned, "");
      return results.every(Boolean);
    }
    const link = document.getElementById("bundle-link");
    link.href = doc.bundle;
    link.hidden = false;

    // 2. The root, from the inclusion proof, against the signed checkpoint's root.
    const { text: body, signatures } = parseNote(doc.checkpoint);
    const [origin, sizeLine, rootLine] = body.split("\n");
    const size = BigInt(doc.size);
    let computed = new Uint8Array();
    let rootOk = false;
    try {
      computed = await rootFromInclusion(leaf, BigInt(doc.index), size, doc.proof.map(base64));
      rootOk = sizeLine === String(size) && equal(computed, base64(rootLine));
    } catch (error) {
      rootOk = false;
    }
    record("check-root", rootOk, hex(computed));

    // 3. The log's signature over the note text (every signature by the log key must verify, and there is one).
    const mine = logKey ? signatures.filter((sig) => names(logKey, sig)) : [];
    let logOk = logKey !== null && origin === logKey.name && mine.length > 0;
    for (const sig of mine) logOk = logOk && (await verifyEd25519(logKey.key, sig.data, utf8(body)));
    record("check-log", logOk, logKey ? logKey.name : "");

    // 4. Cosignatures of distinct configured witnesses over this very checkpoint, against the quorum.
    const counted = new Set();
    for (const witness of witnesses) {
      for (const sig of signatures.filter((s) => names(witness, s))) {
        if (sig.data.length !== 72) continue;
        const time = new DataView(sig.data.buffer, sig.data.byteOffset, 8).getBigUint64(0);
        const message = utf8(`cosignature/v1\ntime ${time}\n${body}`);
        if (await verifyEd25519(witness.key, sig.data.slice(8), message)) counted.add(witness.name);
      }
    }
    // The quorum pinned at enrolment is a floor the server cannot lower.
    const quorum = Math.max(doc.quorum, pinnedQuorum);
    record("check-quorum", counted.size >= quorum, `${counted.size} / ${quorum}: ${[...counted].join(", ")}`);

    // 5. The keys and the quorum are the ones pinned at enrolment.
    record("check-pins", allPinned && quorumPinned, quorumPinned ? "" : `quorum ${doc.quorum} < ${pinnedQuorum}`);
    return results.every(Boolean);
  }

  const verdict = document.getElementById("verdict");
  check().then(
    (ok) => {
      verdict.dataset.verdict = ok ? "verified" : "failed";
      verdict.textContent = ok ? section.dataset.verified : section.dataset.failed;
    },
    (error) => {
      verdict.dataset.verdict = "failed";
      verdict.textContent = `${section.dataset.failed}: ${error.message}`;
    },
  );
})();
