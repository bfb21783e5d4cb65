// The sign-in form: POST /auth/sign-in sets the session cookie; then on to the page asked
// for (?next=), or the desk for an agent.
const form = document.getElementById("sign-in");
const error = document.getElementById("sign-in-error");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  const body = { name: form.name.value.trim(), password: form.password.value };
  let answer;
  try {
    answer = await fetch("/auth/sign-in", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (e) {
    error.textContent = "The server cannot be reached: check your connection and try again.";
    return;
  }
  const json = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    error.textContent = json.error?.message ?? `Sign-in failed (${answer.status}).`;
    form.password.select();
    return;
  }
  const next = new URLSearchParams(location.search).get("next");
  // Only a path of this server, never another site.
  const safe = next && next.startsWith("/") && !next.startsWith("//") ? next : null;
  location.assign(safe ?? (json.role === "agent" ? "/desk" : "/console"));
});
