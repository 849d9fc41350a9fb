// Listening report: sortable tables, metric switch, A/B switching between signals while listening.
// Plain DOM code, no libraries, no network: the page works from file://.
"use strict";

function sortValue(cell) {
  const v = cell.getAttribute("data-v");
  if (v === null) return cell.textContent.trim().toLowerCase();
  return v === "" ? null : Number(v);
}

function sortTable(th) {
  const table = th.closest("table");
  const body = table.tBodies[0];
  const index = Array.from(th.parentNode.children).indexOf(th);
  const ascending = th.getAttribute("aria-sort") !== "ascending";
  table.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const rows = Array.from(body.rows);
  const pinned = rows.filter((r) => r.classList.contains("pinned"));
  const rest = rows.filter((r) => !r.classList.contains("pinned"));
  rest.sort((a, b) => {
    const x = sortValue(a.cells[index]), y = sortValue(b.cells[index]);
    if (x === null || y === null) return (x === null) - (y === null);  // empty cells last
    const order = x < y ? -1 : x > y ? 1 : 0;
    return ascending ? order : -order;
  });
  pinned.concat(rest).forEach((r) => body.appendChild(r));
}

function currentSignal(panel) {
  return panel.querySelector("audio.current") || panel.querySelector("audio");
}

function switchTo(panel, index) {
  const audios = Array.from(panel.querySelectorAll("audio"));
  const target = audios[index];
  if (!target) return;
  const from = currentSignal(panel);
  const playing = audios.some((a) => !a.paused);
  const time = from ? from.currentTime : 0;
  audios.forEach((a) => { if (a !== target) a.pause(); a.classList.remove("current"); });
  panel.querySelectorAll("button.pick").forEach((b) => b.classList.remove("current"));
  target.classList.add("current");
  const button = panel.querySelector(`button.pick[data-index="${index}"]`);
  if (button) button.classList.add("current");
  if (Number.isFinite(time) && time <= (target.duration || Infinity)) target.currentTime = time;
  if (playing) target.play().catch(() => {});
  activate(panel);
}

let activePanel = null;
function activate(panel) {
  if (activePanel) activePanel.classList.remove("active");
  activePanel = panel;
  if (panel) panel.classList.add("active");
}

function showMetric(name) {
  document.querySelectorAll("[data-metric-table]").forEach((d) => {
    d.hidden = d.getAttribute("data-metric-table") !== name;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable th").forEach((th) => {
    th.classList.add("sortable");
    th.addEventListener("click", () => sortTable(th));
  });
  const select = document.getElementById("metric-select");
  if (select) {
    select.addEventListener("change", () => showMetric(select.value));
    showMetric(select.value);
  }
  document.querySelectorAll("tr[data-href]").forEach((tr) => {
    tr.classList.add("clickable");
    tr.addEventListener("click", () => {
      const panel = document.getElementById(tr.getAttribute("data-href").slice(1));
      if (panel) { panel.scrollIntoView({block: "start"}); activate(panel); }
    });
  });
  const panels = Array.from(document.querySelectorAll(".panel"));
  panels.forEach((panel) => {
    panel.querySelectorAll("button.pick").forEach((b) => {
      b.addEventListener("click", () => switchTo(panel, Number(b.getAttribute("data-index"))));
    });
    panel.querySelectorAll("audio").forEach((a, i) => {
      a.addEventListener("play", () => {
        panel.querySelectorAll("audio").forEach((o) => { if (o !== a) o.pause(); });
        if (!a.classList.contains("current")) switchTo(panel, i);
      });
    });
    panel.addEventListener("click", () => activate(panel));
  });
  if (panels.length) activate(panels[0]);
  document.addEventListener("keydown", (e) => {
    if (!activePanel || e.target.tagName === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) return;
    if (/^[0-9]$/.test(e.key)) {
      switchTo(activePanel, (Number(e.key) + 9) % 10);  // 1 = first signal ... 0 = tenth
    } else if (e.key === " ") {
      const a = currentSignal(activePanel);
      if (a) { a.paused ? a.play().catch(() => {}) : a.pause(); }
    } else if (e.key === "n" || e.key === "p") {
      const next = panels[panels.indexOf(activePanel) + (e.key === "n" ? 1 : -1)];
      if (next) { currentSignal(activePanel)?.pause(); activate(next); next.scrollIntoView({block: "start"}); }
    } else {
      return;
    }
    e.preventDefault();
  });
});
