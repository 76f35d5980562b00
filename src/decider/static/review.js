// Keyboard shortcuts for reviewers: 1..9 decide, S skips, N takes the next case.
// Ignored while typing in a field, so a note can contain digits.
document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return;
  const key = event.key.toLowerCase();
  const decide = document.querySelector(`#decide-form button[data-key="${key}"]`);
  if (decide) { event.preventDefault(); decide.click(); return; }
  if (key === "s") { const skip = document.getElementById("skip"); if (skip) { event.preventDefault(); skip.click(); } return; }
  if (key === "n") { const next = document.getElementById("next-case"); if (next) { event.preventDefault(); next.click(); } }
});
