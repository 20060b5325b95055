// The official PocketBase JS SDK against realtime_flask loaded with a collections export
// taken from a real PocketBase 0.40.6 (tests/e2e/test_pocketbase_export.py makes it,
// starts gunicorn -k gevent with it, and passes BASE_URL, SU_EMAIL and SU_PASSWORD).
// The export's `docs` collection has every field type; `users` is PocketBase's default
// (with its `avatar` file field).
import assert from "node:assert/strict";
import { test } from "node:test";
import { EventSource } from "eventsource";
import PocketBase from "pocketbase";

globalThis.EventSource = EventSource;

const BASE_URL = process.env.BASE_URL;
const run = Date.now().toString(36);
// The smallest valid PNG (1x1), so a sniffed type is image/png.
const PNG = Buffer.from(
  "89504e470d0a1a0a0000000d4948445200000001000000010806000000" +
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082",
  "hex",
);

function client() {
  const pb = new PocketBase(BASE_URL);
  pb.autoCancellation(false);
  return pb;
}

async function fetchBytes(url) {
  const res = await fetch(url);
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

// Resolves with the first realtime event `match` accepts, or rejects after timeoutMs.
function waitFor(events, match, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${what} in ${timeoutMs} ms`)), timeoutMs);
    const check = () => {
      const found = events.find(match);
      if (found) {
        clearTimeout(timer);
        resolve(found);
        return true;
      }
      return false;
    };
    if (!check()) events.waiters.push(check);
  });
}

test("upload with FormData, read the record, fetch getURL, the subscriber sees the file name", async () => {
  const watcher = client();
  const events = [];
  events.waiters = [];
  const unsubscribe = await watcher.collection("docs").subscribe("*", (e) => {
    events.push(e);
    events.waiters = events.waiters.filter((check) => !check());
  });

  const pb = client();
  const content = Buffer.from(`hello from the SDK ${run}\n`);
  const form = new FormData();
  form.append("title", `doc-${run}`);
  form.append("attachment", new Blob([content], { type: "text/plain" }), "Hello File.txt");
  form.append("gallery", new Blob([PNG], { type: "image/png" }), "pixel.png");
  form.append("gallery", new Blob([content], { type: "text/plain" }), "notes.txt");
  const created = await pb.collection("docs").create(form);

  assert.match(created.attachment, /^hello_file_[a-z0-9]{10}\.txt$/);
  assert.equal(created.gallery.length, 2);
  assert.match(created.gallery[0], /^pixel_[a-z0-9]{10}\.png$/);
  assert.deepEqual(created.place, { lon: 0, lat: 0 });

  const read = await pb.collection("docs").getOne(created.id);
  assert.equal(read.attachment, created.attachment);
  assert.deepEqual(read.gallery, created.gallery);

  const got = await fetchBytes(pb.files.getURL(read, read.attachment));
  assert.equal(got.status, 200);
  assert.deepEqual(got.bytes, content);
  const image = await fetchBytes(pb.files.getURL(read, read.gallery[0], { thumb: "100x100" }));
  assert.equal(image.status, 200, "a thumb answers the original");
  assert.deepEqual(image.bytes, PNG);
  assert.equal(image.headers.get("content-type"), "image/png");
  assert.match(image.headers.get("content-disposition"), /^inline; /);
  const download = await fetchBytes(pb.files.getURL(read, read.gallery[0], { download: true }));
  assert.match(download.headers.get("content-disposition"), /^attachment; /);

  const event = await waitFor(
    events,
    (e) => e.action === "create" && e.record.id === created.id,
    10000,
    "create event",
  );
  assert.equal(event.record.attachment, created.attachment);
  assert.deepEqual(event.record.gallery, created.gallery);

  // Append one file and remove another: the removed one is gone from the URL too.
  const more = new FormData();
  more.append("gallery+", new Blob([PNG], { type: "image/png" }), "second.png");
  more.append("gallery-", created.gallery[1]);
  const updated = await pb.collection("docs").update(created.id, more);
  assert.equal(updated.gallery.length, 2);
  assert.equal(updated.gallery[0], created.gallery[0]);
  assert.match(updated.gallery[1], /^second_[a-z0-9]{10}\.png$/);
  assert.equal((await fetchBytes(pb.files.getURL(read, created.gallery[1]))).status, 404);

  // A file of the wrong type: PocketBase's 400 body naming the field.
  const bad = new FormData();
  bad.append("title", "bad");
  bad.append("gallery", new Blob([Buffer.from([0, 1, 2, 3])]), "blob.bin");
  await assert.rejects(pb.collection("docs").create(bad), (err) => {
    assert.equal(err.status, 400);
    assert.equal(err.response.data.gallery.code, "validation_invalid_mime_type");
    return true;
  });

  await pb.collection("docs").delete(created.id);
  assert.equal((await fetchBytes(pb.files.getURL(read, read.attachment))).status, 404);
  await unsubscribe();
});

test("a protected file needs a file token from pb.files.getToken()", async () => {
  const su = client();
  await su.collection("_superusers").authWithPassword(process.env.SU_EMAIL, process.env.SU_PASSWORD);
  const secret = Buffer.from(`secret ${run}`);
  const created = await su.collection("vault").create({
    title: `protected-${run}`,
    secret: new Blob([secret], { type: "text/plain" }),
  });
  assert.match(created.secret, /\.txt$/);
  // The viewRule needs an auth record: without a file token the file is not found.
  assert.equal((await fetchBytes(su.files.getURL(created, created.secret))).status, 404);
  const forged = await fetchBytes(su.files.getURL(created, created.secret, { token: su.authStore.token }));
  assert.equal(forged.status, 404, "an auth token is not a file token");
  const token = await su.files.getToken();
  const [, payload] = token.split(".");
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString());
  assert.equal(claims.type, "file");
  const got = await fetchBytes(su.files.getURL(created, created.secret, { token }));
  assert.equal(got.status, 200);
  assert.deepEqual(got.bytes, secret);
  await assert.rejects(client().files.getToken(), (err) => err.status === 401);
});

test("the default users collection takes an avatar on sign-up", async () => {
  const pb = client();
  const email = `avatar-${run}@example.com`;
  const created = await pb.collection("users").create({
    email,
    password: "password123",
    passwordConfirm: "password123",
    name: "Avatar",
    avatar: new Blob([PNG], { type: "image/png" }),
  });
  assert.match(created.avatar, /^[a-z0-9_]+\.png$/);
  await pb.collection("users").authWithPassword(email, "password123");
  const me = await pb.collection("users").getOne(created.id);
  const got = await fetchBytes(pb.files.getURL(me, me.avatar));
  assert.equal(got.status, 200);
  assert.deepEqual(got.bytes, PNG);
});
