// modq console: click a blurred photo to reveal it; keep the queue counts fresh.
"use strict";
document.addEventListener("click", (event) => {
  const img = event.target.closest("img.photo");
  if (img) img.classList.toggle("blurred");
});
const table = document.querySelector("table.queues");
if (table) {
  setInterval(async () => {
    const response = await fetch("/api/queues", { credentials: "same-origin" });
    if (!response.ok) return;
    for (const q of await response.json()) {
      const cell = table.querySelector(`tr[data-queue="${q.queue}"] .pending`);
      if (cell) cell.textContent = q.pending;
      const claimed = table.querySelector(`tr[data-queue="${q.queue}"] .claimed`);
      if (claimed) claimed.textContent = q.claimed;
    }
  }, 15000);
}
