// flowrun console: confirmations, gentle auto-refresh of live runs, and the mermaid graph when a
// local mermaid build is configured. No inline scripts: the CSP allows only this file.

for (const el of document.querySelectorAll("[data-confirm]")) {
  el.addEventListener("click", (ev) => {
    if (!window.confirm(el.dataset.confirm)) ev.preventDefault();
  });
}

const refresh = Number(document.body.dataset.refresh || 0);
if (refresh > 0) {
  const busy = () =>
    [...document.querySelectorAll("input:not([type=hidden]), textarea")].some(
      (i) => i === document.activeElement || i.value,
    );
  setInterval(() => {
    if (!busy()) window.location.reload();
  }, refresh * 1000);
}

const target = document.querySelector("[data-mermaid]");
const source = document.getElementById("mermaid-src");
if (target && source) {
  try {
    const { default: mermaid } = await import(target.dataset.mermaid);
    mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "default" });
    const { svg } = await mermaid.render("flowrun-graph", source.textContent);
    target.innerHTML = svg;
    target.dataset.rendered = "yes";
  } catch (e) {
    target.textContent = "graph not rendered: " + e;
    target.dataset.rendered = "error";
  }
}
