// The official PocketBase JS SDK subscribes to a custom topic (not a collection)
// and receives what the server sends to it (issue #11).
// Run by tests/e2e/test_custom_topics.py with BASE_URL, CONTROL_PORT, TOPIC and
// AUTH_TOKEN (optional): the
// test tells the Python side its client id over the control connection; Python
// sends the messages from another worker and answers with what it sent.
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { EventSource } from "eventsource";
import PocketBase from "pocketbase";

globalThis.EventSource = EventSource;

const BASE_URL = process.env.BASE_URL;
const CONTROL_PORT = Number(process.env.CONTROL_PORT);
const TOPIC = process.env.TOPIC || "chat-room-1";
// the extension test's app takes the user's name as the token
const AUTH_TOKEN = process.env.AUTH_TOKEN || "";

async function until(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 10000; i++) {
    if (await predicate()) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

// One JSON line out, one JSON line back, over a connection to the test.
function ask(message, timeoutMs) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(CONTROL_PORT, "127.0.0.1");
    let text = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from the test within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(JSON.stringify(message) + "\n"));
    socket.on("data", (chunk) => {
      text += chunk;
      const end = text.indexOf("\n");
      if (end >= 0) {
        clearTimeout(timer);
        socket.end();
        resolve(JSON.parse(text.slice(0, end)));
      }
    });
    socket.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

test("a custom topic gets exactly what another worker sent", async () => {
  const pb = new PocketBase(BASE_URL);
  pb.autoCancellation(false);
  if (AUTH_TOKEN) pb.authStore.save(AUTH_TOKEN, null);
  const received = [];
  const withOptions = [];
  const unsubscribe = await pb.realtime.subscribe(TOPIC, (data) => received.push(data));
  // the SDK names this one "<topic>?options=...": it is reached all the same
  const unsubscribeOptions = await pb.realtime.subscribe(
    TOPIC,
    (data) => withOptions.push(data),
    { headers: { "X-Room": "1" }, note: "any" },
  );
  try {
    assert.ok(pb.realtime.isConnected);
    const clientId = pb.realtime.clientId;
    assert.match(clientId, /^[A-Za-z0-9]{40}$/);
    const answer = await ask({ clientId }, 60000);
    assert.notEqual(answer.streamNode, answer.sendNode);
    const enough = () => Math.min(received.length, withOptions.length) >= answer.sent.length;
    await until(enough, 10000, "the messages");
    // the message to chat-room-2 never arrived, each of the others once, in order
    assert.deepEqual(received, answer.sent);
    assert.deepEqual(withOptions, answer.sent);
  } finally {
    await unsubscribeOptions();
    await unsubscribe();
    pb.realtime.unsubscribe();
  }
});
