// The draw-to-teach page: draw on the canvas, add drawings as examples of named classes, and
// see the live top 3 with the model's unknown decision. Everything runs in the browser.
import { EmbeddingModel, FewShotClassifier } from "../src/index.js";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d", { willReadFrequently: true });
let model = null;
let clf = null;
let strokes = 0;

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  strokes = 0;
}

function drawing() {
  return ctx.getImageData(0, 0, pad.width, pad.height);
}

// Pointer events cover mouse, pen and touch alike.
let last = null;
pad.addEventListener("pointerdown", (e) => { pad.setPointerCapture(e.pointerId); last = [e.offsetX, e.offsetY]; strokes++; });
pad.addEventListener("pointermove", (e) => {
  if (!last) return;
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 12;
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(...last);
  ctx.lineTo(e.offsetX, e.offsetY);
  ctx.stroke();
  last = [e.offsetX, e.offsetY];
});
pad.addEventListener("pointerup", () => { last = null; predict(); });
pad.addEventListener("pointercancel", () => { last = null; }); // e.g. a touch the browser took back

// The store also lives in IndexedDB, so a reload keeps what was taught.
function storeDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open("edgemeta-demo", 1);
    req.onupgradeneeded = () => req.result.createObjectStore("stores");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function keep(bytes) {
  const db = await storeDb();
  await new Promise((resolve, reject) => {
    const tx = db.transaction("stores", "readwrite");
    tx.objectStore("stores").put(bytes, model.fingerprint);
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
  });
}

async function kept() {
  const db = await storeDb();
  return new Promise((resolve) => {
    const req = db.transaction("stores").objectStore("stores").get(model.fingerprint);
    req.onsuccess = () => resolve(req.result ?? null);
    req.onerror = () => resolve(null);
  });
}

function showClasses() {
  $("classes").innerHTML = "";
  const shots = clf.counts();
  for (const label of clf.labels) {
    const li = document.createElement("li");
    li.textContent = `${label} (${shots[label]} drawing(s)) `;
    const remove = Object.assign(document.createElement("button"), { textContent: "remove" });
    remove.onclick = () => { clf.remove(label); showClasses(); predict(); };
    li.append(remove);
    $("classes").append(li);
  }
  $("save").disabled = clf.labels.length === 0;
  const count = clf.labels.length;
  keep(clf.save()).then(() => { document.body.dataset.kept = String(count); }).catch((e) => { $("status").textContent = `Not kept in this browser: ${e.message}`; });
}

async function predict() {
  if (!clf || clf.labels.length === 0 || strokes === 0) return;
  const start = performance.now();
  const [preds] = await clf.predict(drawing(), { topK: 3 });
  const [accepted] = clf.accepts([preds]);
  const ms = performance.now() - start;
  $("top3").innerHTML = preds.map((p) => `<li>${escape(p.label)}: score ${p.score.toFixed(3)}, distance ${p.distance.toFixed(2)}</li>`).join("");
  $("decision").textContent = accepted ? `It is ${preds[0].label}` : "Unknown: not like any class taught";
  $("decision").className = accepted ? "known" : "unknown";
  $("latency").textContent = `${ms.toFixed(1)} ms for this image (preprocessing, network and decision)`;
  document.body.dataset.prediction = accepted ? preds[0].label : "";
  document.body.dataset.nearest = preds[0].label;
  document.body.dataset.predictions = String(Number(document.body.dataset.predictions ?? 0) + 1);
}

function escape(text) {
  return text.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

$("clear").onclick = clearPad;
$("add").onclick = async () => {
  const label = $("label").value.trim();
  if (!label || strokes === 0) { $("status").textContent = "Draw something and name its class first."; return; }
  try {
    const shots = await clf.enroll(label, drawing());
    $("status").textContent = `Added drawing ${shots} of ${label}` + (shots < 5 ? " (1-5 drawings per class)." : ".");
  } catch (e) {
    $("status").textContent = e.message;
  }
  clearPad();
  showClasses();
};

// The shipped examples (models/examples): its manifest.json names the preset's set, the drawings
// per class and every image, so any static server that holds the folder serves the preset.
$("preset").onclick = async () => {
  const where = new URL("../examples/manifest.json", location.href);
  const res = await fetch(where).catch(() => null);
  if (!res?.ok) {
    $("status").textContent = `No shipped examples at ${where.pathname}: copy models/examples to web/examples.`;
    return;
  }
  const { preset, sets } = await res.json();
  for (const { label, images } of sets[preset.set]) {
    const bitmaps = await Promise.all(images.slice(0, preset.shots).map(async (path) => {
      return createImageBitmap(await (await fetch(new URL(path, where))).blob());
    }));
    await clf.enroll(label, bitmaps);
  }
  $("status").textContent = `Loaded ${sets[preset.set].length} classes of shipped ${preset.set} examples.`;
  showClasses();
};

$("save").onclick = () => {
  const url = URL.createObjectURL(new Blob([clf.save()], { type: "application/octet-stream" }));
  Object.assign(document.createElement("a"), { href: url, download: "store.npz" }).click();
  URL.revokeObjectURL(url);
};
$("load").onchange = async (e) => {
  try {
    clf = FewShotClassifier.load(new Uint8Array(await e.target.files[0].arrayBuffer()), model);
    showClasses();
    $("status").textContent = `Loaded ${clf.labels.length} classes.`;
  } catch (err) {
    $("status").textContent = err.message;
  }
};

async function main() {
  clearPad();
  const start = performance.now();
  model = await EmbeddingModel.create(new URL("../model.onnx", location.href).href);
  const saved = await kept().catch(() => null);
  clf = saved ? FewShotClassifier.load(saved, model) : new FewShotClassifier(model);
  if (saved) showClasses();
  for (const id of ["add", "preset"]) $(id).disabled = false;
  $("status").textContent = `Model ${model.name} loaded in ${(performance.now() - start).toFixed(0)} ms. Draw a symbol, name it, add it.`;
  document.body.dataset.ready = "1";
}

// Offline use: sw.js keeps every file this page loaded (see there how versions refresh). Service
// workers need a secure context: https, or http on localhost/127.0.0.1.
async function keepOffline() {
  if (!("serviceWorker" in navigator) || !navigator.onLine) return;
  // The web/ folder, not just demo/: onnxruntime-web's thread workers start from its .mjs, and a
  // worker script is only served by a worker whose scope holds it (needs the server's
  // Service-Worker-Allowed header); without the header only demo/ is covered.
  await navigator.serviceWorker.register("sw.js", { scope: "../" }).catch(() => navigator.serviceWorker.register("sw.js"));
  const { active } = await navigator.serviceWorker.ready;
  const urls = await neededUrls();
  const reply = await new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = (e) => resolve(e.data);
    active.postMessage({ type: "refresh", urls }, [channel.port2]);
  });
  if (reply.error) throw new Error(reply.error);
  if (reply.updated) $("status").textContent += " A new version was downloaded for offline use: reload to run it.";
  document.body.dataset.offline = reply.version;
}

/** This page, every same-origin file it fetched so far (scripts, modules, onnxruntime-web's .mjs
 * and .wasm, the model) and the manifest with the preset's images, as absolute URLs. */
async function neededUrls() {
  const urls = [location.href.split("#")[0]];
  for (const { name, responseStatus } of performance.getEntriesByType("resource")) {
    if (new URL(name).origin === location.origin && (responseStatus ?? 200) === 200) urls.push(name);
  }
  const manifest = new URL("../examples/manifest.json", location.href);
  const res = await fetch(manifest).catch(() => null);
  if (res?.ok) {
    urls.push(manifest.href);
    const { preset, sets } = await res.json();
    for (const { images } of sets[preset.set]) urls.push(...images.slice(0, preset.shots).map((path) => new URL(path, manifest).href));
  }
  return urls;
}

main().then(
  () => keepOffline().catch((e) => {
    const served = navigator.serviceWorker?.controller ? "Running from the offline copy, not refreshed" : "Not kept for offline use";
    $("status").textContent += ` ${served} (${e.message}).`;
  }),
  (e) => { $("status").textContent = `Error: ${e.message}`; },
);
