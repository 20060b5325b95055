// The official PocketBase JS SDK against realtime_flask's records and auth API.
// Run by tests/e2e/test_js_sdk.py, which starts gunicorn -k gevent with
// tests/js/schema.json and passes BASE_URL, SU_EMAIL and SU_PASSWORD.
import assert from "node:assert/strict";
import { test } from "node:test";
import PocketBase from "pocketbase";

const BASE_URL = process.env.BASE_URL;
const SU_EMAIL = process.env.SU_EMAIL;
const SU_PASSWORD = process.env.SU_PASSWORD;
const run = Date.now().toString(36);

function client() {
  const pb = new PocketBase(BASE_URL);
  pb.autoCancellation(false);
  return pb;
}

async function status(promise) {
  try {
    await promise;
    return 200;
  } catch (err) {
    assert.ok(err.response && typeof err.response.message === "string", `envelope: ${err}`);
    assert.equal(err.status, err.response.status);
    return err.status;
  }
}

async function signUp(name) {
  const pb = client();
  const email = `${name}-${run}@example.com`;
  const record = await pb.collection("users").create({
    email,
    password: "password123",
    passwordConfirm: "password123",
    name,
  });
  await pb.collection("users").authWithPassword(email, "password123");
  return { pb, email, record };
}

test("sign-up, authWithPassword, authRefresh, isValid, isSuperuser", async () => {
  const pb = client();
  const email = `alice-${run}@example.com`;
  const created = await pb.collection("users").create({
    email,
    password: "password123",
    passwordConfirm: "password123",
    name: "Alice",
  });
  assert.match(created.id, /^[a-z0-9]{15}$/);
  assert.equal(created.collectionName, "users");
  assert.equal(created.email, undefined, "a guest does not see a hidden email");
  assert.equal(pb.authStore.isValid, false);

  const auth = await pb.collection("users").authWithPassword(email, "password123");
  assert.equal(auth.record.id, created.id);
  assert.equal(auth.record.email, email, "the owner sees its email");
  assert.equal(auth.record.password, undefined);
  assert.equal(auth.record.tokenKey, undefined);
  assert.equal(pb.authStore.isValid, true);
  assert.equal(pb.authStore.isSuperuser, false);
  const [, payload] = pb.authStore.token.split(".");
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString());
  assert.deepEqual(Object.keys(claims).sort(), ["collectionId", "exp", "id", "refreshable", "type"]);

  const before = pb.authStore.token;
  const refreshed = await pb.collection("users").authRefresh();
  assert.equal(refreshed.record.id, created.id);
  assert.equal(pb.authStore.isValid, true);
  assert.ok(before.length > 100);

  const bad = await status(client().collection("users").authWithPassword(email, "nope-nope"));
  assert.equal(bad, 400);
  const unknown = await status(client().collection("users").authWithPassword(`x${email}`, "password123"));
  assert.equal(unknown, 400);

  const guest = client();
  guest.authStore.save("garbage", null);
  assert.equal(await status(guest.collection("users").authRefresh()), 401);

  const su = client();
  await su.collection("_superusers").authWithPassword(SU_EMAIL, SU_PASSWORD);
  assert.equal(su.authStore.isSuperuser, true);
  assert.equal(su.authStore.isValid, true);
  assert.equal(await status(su.collection("users").authRefresh()), 403);
});

test("create, update, delete and the rule outcomes as ClientResponseError statuses", async () => {
  const { pb: alice, record: aliceRec } = await signUp("alice2");
  const { pb: bob, record: bobRec } = await signUp("bob2");
  const guest = client();

  const post = await alice.collection("posts").create({ title: "Hello", owner: aliceRec.id, views: 5, tags: ["a"] });
  assert.equal(post.title, "Hello");
  assert.equal(post.views, 5);
  assert.deepEqual(post.tags, ["a"]);
  assert.match(post.created, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$/);
  const updated = await bob.collection("posts").update(post.id, { title: "Hello again" });
  assert.equal(updated.title, "Hello again");

  assert.equal(await status(guest.collection("posts").create({ title: "x" })), 400);
  assert.equal(await status(guest.collection("posts").getOne(post.id)), 404);
  assert.equal(await status(guest.collection("posts").update(post.id, { title: "x" })), 404);
  assert.equal(await status(guest.collection("posts").delete(post.id)), 404);
  const empty = await guest.collection("posts").getList(1, 30);
  assert.deepEqual([empty.items.length, empty.totalItems, empty.totalPages], [0, 0, 0]);

  const err = await alice.collection("posts").create({ title: "" }).catch((e) => e);
  assert.equal(err.status, 400);
  assert.equal(err.response.data.title.code, "validation_required");

  const note = await alice.collection("notes").create({ title: "mine", owner: aliceRec.id });
  assert.equal(await status(alice.collection("notes").create({ title: "spoof", owner: bobRec.id })), 400);
  assert.equal(await status(bob.collection("notes").getOne(note.id)), 404);
  assert.equal(await status(bob.collection("notes").update(note.id, { title: "x" })), 404);
  assert.equal(await status(bob.collection("notes").delete(note.id)), 404);
  assert.equal((await bob.collection("notes").getList()).items.length, 0);

  assert.equal(await status(alice.collection("locked").getList()), 403);
  assert.equal(await status(alice.collection("locked").getOne("doesnotexist123")), 403);
  assert.equal(await status(alice.collection("locked").create({ title: "x" })), 403);
  assert.equal(await status(alice.collection("nope").getList()), 404);
  assert.equal(await status(alice.collection("posts").getList(1, 30, { filter: "@request.auth.id != ''" })), 403);
  assert.equal(await status(alice.collection("posts").getList(1, 30, { filter: "title ==" })), 400);

  assert.equal(await alice.collection("notes").delete(note.id), true);
  assert.equal(await status(alice.collection("notes").getOne(note.id)), 404);
  const pub = await guest.collection("public_posts").create({ title: "pub" });
  assert.equal((await guest.collection("public_posts").getOne(pub.id)).title, "pub");
});

test("getList with filter, sort and paging; getOne with expand and fields", async () => {
  const { pb, record: me } = await signUp("carol");
  const tag = `run${run}`;
  for (const [title, views] of [["a", 1], ["b", 5], ["c", 3], ["d", 9], ["e", 7]]) {
    await pb.collection("posts").create({ title: `${tag}-${title}`, views, owner: me.id });
  }
  const page = await pb.collection("posts").getList(2, 2, { filter: `title ~ '${tag}'`, sort: "-views" });
  assert.deepEqual([page.page, page.perPage, page.totalItems, page.totalPages], [2, 2, 5, 3]);
  assert.deepEqual(page.items.map((r) => r.views), [5, 3]);
  const filtered = await pb.collection("posts").getList(1, 10, {
    filter: pb.filter("title ~ {:tag} && views > {:min}", { tag, min: 4 }),
    sort: "views",
  });
  assert.deepEqual(filtered.items.map((r) => r.views), [5, 7, 9]);
  const first = await pb.collection("posts").getFirstListItem(`title = '${tag}-d'`);
  assert.equal(first.views, 9);

  const one = await pb.collection("posts").getOne(first.id, { expand: "owner", fields: "id,title,expand.owner.name" });
  assert.deepEqual(one, { id: first.id, title: `${tag}-d`, expand: { owner: { name: "carol" } } });
  const full = await pb.collection("posts").getOne(first.id, { expand: "owner" });
  assert.equal(full.expand.owner.id, me.id);
  assert.equal(full.expand.owner.email, `carol-${run}@example.com`);
});

test("getFullList over more than 1000 records", async () => {
  const su = client();
  await su.collection("_superusers").authWithPassword(SU_EMAIL, SU_PASSWORD);
  const existing = (await su.collection("bulk").getList(1, 1)).totalItems;
  const want = 1003 - existing;
  const work = Array.from({ length: Math.max(want, 0) }, (_, i) => i);
  const workers = Array.from({ length: 16 }, async () => {
    while (work.length) {
      const n = work.pop();
      await su.collection("bulk").create({ n });
    }
  });
  await Promise.all(workers);
  const all = await client().collection("bulk").getFullList({ sort: "n" });
  assert.equal(all.length, Math.max(existing, 1003));
});

test("a password change makes earlier tokens fail", async () => {
  const { pb, email, record } = await signUp("dave");
  const oldToken = pb.authStore.token;
  await pb.collection("users").update(record.id, {
    oldPassword: "password123",
    password: "newpassword456",
    passwordConfirm: "newpassword456",
  });
  const stale = client();
  stale.authStore.save(oldToken, record);
  assert.equal(await status(stale.collection("users").authRefresh()), 401);
  assert.equal(await status(stale.collection("posts").create({ title: "as guest" })), 400);
  const fresh = client();
  await fresh.collection("users").authWithPassword(email, "newpassword456");
  assert.equal(fresh.authStore.isValid, true);
});
