// The official PocketBase JS SDK's realtime against realtime_flask (rules issue #4).
// Run by tests/e2e/test_js_sdk.py with BASE_URL, SU_EMAIL and SU_PASSWORD.
// The SDK reaches the server through a TCP proxy in this process, so a test can
// cut its stream the way a network would.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, test } from "node:test";
import { EventSource } from "eventsource";
import PocketBase from "pocketbase";

globalThis.EventSource = EventSource;

const BASE_URL = new URL(process.env.BASE_URL);
const run = Date.now().toString(36);
let proxyUrl;
const proxy = { server: null, sockets: new Set() };

before(async () => {
  proxy.server = net.createServer((inbound) => {
    const outbound = net.connect(Number(BASE_URL.port), BASE_URL.hostname);
    const pair = [inbound, outbound];
    proxy.sockets.add(pair);
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    const drop = () => {
      inbound.destroy();
      outbound.destroy();
      proxy.sockets.delete(pair);
    };
    inbound.on("error", drop).on("close", drop);
    outbound.on("error", drop).on("close", drop);
  });
  await new Promise((resolve) => proxy.server.listen(0, "127.0.0.1", resolve));
  proxyUrl = `http://127.0.0.1:${proxy.server.address().port}`;
});

after(async () => {
  for (const [a, b] of proxy.sockets) {
    a.destroy();
    b.destroy();
  }
  await new Promise((resolve) => proxy.server.close(resolve));
});

function client(url = proxyUrl) {
  const pb = new PocketBase(url);
  pb.autoCancellation(false);
  return pb;
}

async function until(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 10000; i++) {
    if (await predicate()) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

// Collects callbacks; next() awaits the next one with a deadline.
class Inbox {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.waiters = [];
  }
  push = (e) => {
    this.items.push(e);
    const w = this.waiters.shift();
    if (w) w();
  };
  async next(timeoutMs = 5000) {
    if (!this.items.length) {
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${this.name}: no event in ${timeoutMs} ms`)), timeoutMs);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.items.shift();
  }
  // Everything received before the sentinel record (whose title is `mark`).
  async until(mark, timeoutMs = 5000) {
    const seen = [];
    for (let i = 0; i < 1000; i++) {
      const e = await this.next(timeoutMs);
      if (e.record && e.record.title === mark) return seen;
      seen.push(e);
    }
    throw new Error("no sentinel");
  }
}

async function user(name) {
  const pb = client();
  const email = `${name}-${run}@example.com`;
  const record = await pb.collection("users").create({ email, password: "password123", passwordConfirm: "password123", name });
  await pb.collection("users").authWithPassword(email, "password123");
  return { pb, email, record };
}

async function status(promise) {
  try {
    await promise;
    return 200;
  } catch (err) {
    return err.status;
  }
}

let markN = 0;
// Creates a public_posts record every subscriber of public_posts/* receives.
async function mark() {
  const title = `mark-${run}-${markN++}`;
  await client(process.env.BASE_URL).collection("public_posts").create({ title });
  return title;
}

test("subscribe('*'): create, update, delete in order; record topic; unsubscribe", async () => {
  const { pb } = await user("rt-alice");
  const all = new Inbox("all");
  const one = new Inbox("one");
  const sentinel = new Inbox("sentinel");
  await pb.collection("public_posts").subscribe("*", sentinel.push);
  const unsubscribeAll = await pb.collection("posts").subscribe("*", all.push);
  const other = await pb.collection("posts").create({ title: "other" });
  const post = await pb.collection("posts").create({ title: "first" });
  await pb.collection("posts").subscribe(post.id, one.push);
  await pb.collection("posts").update(post.id, { title: "second" });
  await pb.collection("posts").update(other.id, { title: "other2" });
  await pb.collection("posts").delete(post.id);
  await sentinel.until(await mark());

  const seen = all.items.map((e) => [e.action, e.record.id, e.record.title]);
  assert.deepEqual(seen, [
    ["create", other.id, "other"],
    ["create", post.id, "first"],
    ["update", post.id, "second"],
    ["update", other.id, "other2"],
    ["delete", post.id, "second"],
  ]);
  assert.deepEqual(one.items.map((e) => [e.action, e.record.id]), [["update", post.id], ["delete", post.id]]);
  assert.equal(all.items[0].record.collectionName, "posts");

  all.items.length = 0;
  await unsubscribeAll(); // by the returned function
  await pb.collection("posts").create({ title: "after-unsub" });
  await sentinel.until(await mark());
  assert.equal(all.items.length, 0);

  const again = new Inbox("again");
  await pb.collection("posts").subscribe("*", again.push);
  await pb.collection("posts").unsubscribe("*"); // by topic
  await pb.collection("posts").create({ title: "after-unsub-2" });
  await sentinel.until(await mark());
  assert.equal(again.items.length, 0);
  pb.realtime.unsubscribe();
});

test("rules: guests see nothing protected, owners see only their own, public reaches guests", async () => {
  const alice = await user("rules-alice");
  const bob = await user("rules-bob");
  const guest = client();
  const inbox = { guest: new Inbox("guest"), alice: new Inbox("alice"), bob: new Inbox("bob") };
  const pub = { guest: new Inbox("g-pub"), alice: new Inbox("a-pub"), bob: new Inbox("b-pub") };
  for (const [name, pb] of [["guest", guest], ["alice", alice.pb], ["bob", bob.pb]]) {
    await pb.collection("posts").subscribe("*", inbox[name].push);
    await pb.collection("notes").subscribe("*", inbox[name].push);
    await pb.collection("public_posts").subscribe("*", pub[name].push);
  }
  const post = await alice.pb.collection("posts").create({ title: "protected" });
  const aNote = await alice.pb.collection("notes").create({ title: "alice-note", owner: alice.record.id });
  const bNote = await bob.pb.collection("notes").create({ title: "bob-note", owner: bob.record.id });
  await alice.pb.collection("notes").delete(aNote.id);
  await bob.pb.collection("notes").delete(bNote.id);
  const m = await mark();
  const got = {};
  for (const name of ["guest", "alice", "bob"]) {
    await pub[name].until(m); // the public collection reaches everybody, guests included
    got[name] = inbox[name].items.map((e) => `${e.action}:${e.record.title}`);
  }
  assert.deepEqual(got.guest, []);
  assert.deepEqual(got.alice, ["create:protected", "create:alice-note", "delete:alice-note"]);
  assert.deepEqual(got.bob, ["create:protected", "create:bob-note", "delete:bob-note"]);
  assert.ok(post.id);
  for (const pb of [guest, alice.pb, bob.pb]) pb.realtime.unsubscribe();
});

test("a guest connection upgraded to a user; logout and hijack answer 403", async () => {
  const alice = await user("up-alice");
  const bob = await user("up-bob");
  const pb = client();
  const posts = new Inbox("posts");
  const pub = new Inbox("pub");
  await pb.collection("posts").subscribe("*", posts.push);
  await pb.collection("public_posts").subscribe("*", pub.push);
  const firstId = pb.realtime.clientId;
  await alice.pb.collection("posts").create({ title: "before-login" });
  assert.deepEqual(await pub.until(await mark()), []);
  assert.equal(posts.items.length, 0);

  await pb.collection("users").authWithPassword(alice.email, "password123");
  await pb.collection("tags_topic_only").subscribe("*", () => {}); // the next POST carries the token
  assert.equal(pb.realtime.clientId, firstId, "same connection");
  await alice.pb.collection("posts").create({ title: "after-login" });
  await pub.until(await mark());
  assert.deepEqual(posts.items.map((e) => e.record.title), ["after-login"]);

  const hijack = await status(
    bob.pb.send("/api/realtime", { method: "POST", body: { clientId: firstId, subscriptions: [] } }),
  );
  assert.equal(hijack, 403);

  pb.authStore.clear();
  const logout = await pb.collection("more_topics").subscribe("*", () => {}).then(() => 204, (e) => e.status);
  assert.equal(logout, 403);
  posts.items.length = 0;
  await alice.pb.collection("posts").create({ title: "still-flowing" });
  await pub.until(await mark());
  assert.deepEqual(posts.items.map((e) => e.record.title), ["still-flowing"]);
  pb.realtime.unsubscribe();
});

test("fields, expand and filter options; same topic with and without options", async () => {
  const { pb, record: me } = await user("opt-carol");
  const plain = new Inbox("plain");
  const shaped = new Inbox("shaped");
  const expanded = new Inbox("expanded");
  const filtered = new Inbox("filtered");
  const pub = new Inbox("pub");
  await pb.collection("public_posts").subscribe("*", pub.push);
  await pb.collection("posts").subscribe("*", plain.push);
  await pb.collection("posts").subscribe("*", shaped.push, { fields: "id,title" });
  await pb.collection("posts").subscribe("*", expanded.push, { expand: "owner", fields: "title,expand.owner.name" });
  await pb.collection("posts").subscribe("*", filtered.push, { filter: "views > 10" });
  const low = await pb.collection("posts").create({ title: "low", views: 1, owner: me.id });
  const high = await pb.collection("posts").create({ title: "high", views: 50, owner: me.id });
  await pub.until(await mark());
  assert.deepEqual(plain.items.map((e) => e.record.title), ["low", "high"]);
  assert.deepEqual(shaped.items.map((e) => e.record), [{ id: low.id, title: "low" }, { id: high.id, title: "high" }]);
  assert.deepEqual(expanded.items[0].record, { title: "low", expand: { owner: { name: "opt-carol" } } });
  assert.deepEqual(filtered.items.map((e) => e.record.title), ["high"]);
  pb.realtime.unsubscribe();
});

test("pb.send errors: unknown client id 404, missing clientId 400", async () => {
  const pb = client();
  const unknown = await pb.send("/api/realtime", { method: "POST", body: { clientId: "nope", subscriptions: [] } }).catch((e) => e);
  assert.equal(unknown.status, 404);
  assert.equal(unknown.response.message, "Missing or invalid client id.");
  const missing = await pb.send("/api/realtime", { method: "POST", body: { subscriptions: [] } }).catch((e) => e);
  assert.equal(missing.status, 400);
  assert.equal(missing.response.data.clientId.code, "validation_required");
});

test("a cut stream reconnects with a new client id and its topics; the old id 404s within 3 s", async () => {
  const pb = client();
  const pub = new Inbox("pub");
  const connects = new Inbox("connects");
  await pb.realtime.subscribe("PB_CONNECT", connects.push);
  await pb.collection("public_posts").subscribe("*", pub.push);
  await connects.next();
  const oldId = pb.realtime.clientId;
  await pub.until(await mark());
  for (const [a, b] of proxy.sockets) {
    a.destroy();
    b.destroy();
  }
  await connects.next(10000);
  assert.notEqual(pb.realtime.clientId, oldId);
  await pub.until(await mark(), 10000);
  const direct = client(process.env.BASE_URL);
  const started = Date.now();
  await until(
    async () => (await status(direct.send("/api/realtime", { method: "POST", body: { clientId: oldId, subscriptions: [] } }))) === 404,
    3000,
    "the old client id to answer 404",
  );
  assert.ok(Date.now() - started <= 3000);
  pb.realtime.unsubscribe();
});

test("a password change while connected stops events that need auth", async () => {
  const dave = await user("pw-dave");
  const writer = await user("pw-writer");
  const posts = new Inbox("posts");
  const pub = new Inbox("pub");
  await dave.pb.collection("posts").subscribe("*", posts.push);
  await dave.pb.collection("public_posts").subscribe("*", pub.push);
  await writer.pb.collection("posts").create({ title: "seen" });
  await pub.until(await mark());
  assert.deepEqual(posts.items.map((e) => e.record.title), ["seen"]);
  const other = client();
  await other.collection("users").authWithPassword(dave.email, "password123");
  await other.collection("users").update(dave.record.id, {
    oldPassword: "password123",
    password: "newpassword456",
    passwordConfirm: "newpassword456",
  });
  posts.items.length = 0;
  await writer.pb.collection("posts").create({ title: "unseen" });
  await pub.until(await mark());
  assert.deepEqual(posts.items, []);
  dave.pb.realtime.unsubscribe();
});
