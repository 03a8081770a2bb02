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

// The shipped examples (models/examples/omniglot): five drawings per class, listed by the server.
$("preset").onclick = async () => {
  const listing = await (await fetch("../examples/omniglot/")).text();
  const names = [...listing.matchAll(/href="([^"/?]+)\/"/g)].map((m) => decodeURIComponent(m[1]));
  for (const name of names) {
    const images = await Promise.all([0, 1, 2, 3, 4].map(async (i) => {
      const blob = await (await fetch(`../examples/omniglot/${encodeURIComponent(name)}/${i}.png`)).blob();
      return createImageBitmap(blob);
    }));
    await clf.enroll(name, images);
  }
  $("status").textContent = `Loaded ${names.length} classes of shipped Omniglot examples.`;
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

main().catch((e) => { $("status").textContent = `Error: ${e.message}`; });
