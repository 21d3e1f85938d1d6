// The console works without this file. It adds: the browser's time zone (so times are shown
// in local time), a copy button for a new secret, and a confirmation before destructive
// actions (forms marked data-confirm).
(() => {
  try {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && /^[A-Za-z0-9_+\/-]+$/.test(zone) && !document.cookie.includes("perkamo_tz=" + zone)) {
      document.cookie = "perkamo_tz=" + zone + "; path=/console; SameSite=Lax; max-age=31536000";
    }
  } catch (e) { /* no zone: times stay in UTC */ }
})();
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const target = document.getElementById(button.dataset.copy);
  if (target && navigator.clipboard) {
    navigator.clipboard.writeText(target.textContent.trim());
    button.textContent = "Copied";
  }
});
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});
