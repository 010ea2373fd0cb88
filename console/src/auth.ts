// Signing in: the admin token, checked against the server and kept for this tab only
// (sessionStorage: closing the tab forgets it; nothing goes to localStorage or cookies).

import { connect, describe, type Api } from "./api";
import { h, setText, show } from "./dom";

const KEY = "coupon-console.admin-token";

/** The token this tab signed in with; undefined when signed out. */
export function savedToken(): string | undefined {
  return sessionStorage.getItem(KEY) ?? undefined;
}

export function saveToken(token: string): void {
  sessionStorage.setItem(KEY, token);
}

export function forgetToken(): void {
  sessionStorage.removeItem(KEY);
}

/** Checks a token by listing one campaign: only an accepted token gets an answer. */
export async function verify(token: string): Promise<Api> {
  const api = connect(token);
  await api.campaigns.listCampaigns({ pageSize: 1 });
  return api;
}

/**
 * The sign-in form. `notice` explains why it is shown (e.g. the token stopped working);
 * `onSignedIn` gets clients for the verified token.
 */
export function signInView(notice: string | undefined, onSignedIn: (api: Api) => void): HTMLElement {
  const input = h("input", {
    id: "signin-token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    "data-testid": "signin-token",
    placeholder: "Bearer token",
  });
  const error = h("p", { class: "alert alert-error", role: "alert", "data-testid": "signin-error" });
  const button = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "signin-submit" }, "Sign in");
  const fail = (message: string): void => {
    setText(error, message);
    show(error, true);
  };
  show(error, notice !== undefined);
  if (notice) setText(error, notice);

  const submit = async (event: Event): Promise<void> => {
    event.preventDefault();
    const token = input.value.trim();
    button.disabled = true;
    setText(button, "Checking…");
    show(error, false);
    try {
      const api = await verify(token);
      saveToken(token);
      onSignedIn(api);
    } catch (err) {
      fail(describe(err).message);
    } finally {
      button.disabled = false;
      setText(button, "Sign in");
    }
  };

  const form = h(
    "form",
    { class: "card signin", "data-testid": "signin-form", onsubmit: (e) => void submit(e) },
    h("h1", {}, "Coupon console"),
    h("p", { class: "muted" }, "Campaign managers sign in with the server's admin token. It is kept in this tab only."),
    h("label", { for: "signin-token" }, "Admin token"),
    input,
    h("p", { class: "hint" }, "Leave it empty if the server runs without an admin token (loopback only)."),
    error,
    h("div", { class: "actions" }, button),
  );
  queueMicrotask(() => input.focus());
  return form;
}
