// The console's shell: sign-in gate, top bar and the two pages (#/ the campaigns,
// #/campaigns/<id> one campaign). Hash routes: the server serves one page at /console/.

import { describe, type Api } from "./api";
import { forgetToken, savedToken, signInView, verify } from "./auth";
import { createView } from "./create";
import { detailView } from "./detail";
import { h, replaceChildren } from "./dom";
import { listView } from "./list";
import type { View, ViewContext } from "./view";

const root = document.getElementById("app")!;
let current: View | undefined;
let api: Api | undefined; // clients for the verified token; undefined when signed out

function hrefFor(campaignId: string): string {
  return `#/campaigns/${encodeURIComponent(campaignId)}`;
}

function leave(): void {
  current?.dispose();
  current = undefined;
}

/** Forgets the token and shows the sign-in form, saying why when `notice` is given. */
function signOut(notice?: string): void {
  forgetToken();
  showSignIn(notice);
}

function showSignIn(notice?: string): void {
  leave();
  api = undefined;
  window.removeEventListener("hashchange", onRoute);
  document.title = "Sign in · Coupon console";
  replaceChildren(root, h("main", { class: "center-page" }, signInView(notice, signedIn)));
}

function signedIn(verified: Api): void {
  api = verified;
  window.addEventListener("hashchange", onRoute);
  onRoute();
}

function topBar(): HTMLElement {
  return h(
    "header",
    { class: "topbar" },
    h("a", { href: "#/", class: "brand" }, h("span", { class: "logo" }, "쿠폰"), "Coupon console"),
    h(
      "button",
      { type: "button", class: "btn btn-ghost", "data-testid": "signout", onclick: () => signOut() },
      "Sign out",
    ),
  );
}

/** Shows the page the hash names. */
function onRoute(): void {
  if (!api) return;
  leave();
  const signedInWith = api;
  const ctx: ViewContext = {
    api,
    hrefFor,
    // Only once: requests still in flight when the first failure signed out are ignored.
    onAuthFailure: (message) => {
      if (api === signedInWith) signOut(message);
    },
  };
  const match = /^#\/campaigns\/(.+)$/.exec(location.hash);
  const main = h("main", { class: "page" });
  if (match) {
    current = detailView(ctx, decodeURIComponent(match[1]!));
    main.appendChild(current.el);
  } else {
    document.title = "Campaigns · Coupon console";
    const list = listView(ctx);
    const create = createView(ctx, () => list.refresh());
    current = {
      el: main,
      dispose: () => {
        list.dispose();
        create.dispose();
      },
    };
    main.append(create.el, list.el);
  }
  replaceChildren(root, topBar(), main);
  window.scrollTo(0, 0);
}

/** A tab that signed in before (a reload) checks its token again first. */
async function start(): Promise<void> {
  const token = savedToken();
  if (token === undefined) return signOut();
  replaceChildren(
    root,
    h("main", { class: "center-page" }, h("p", { class: "muted", "data-testid": "loading" }, "Connecting…")),
  );
  try {
    signedIn(await verify(token));
  } catch (err) {
    // A refused token is forgotten; after a network failure a reload tries it again.
    const failure = describe(err);
    if (failure.kind === "auth") signOut(failure.message);
    else showSignIn(failure.message);
  }
}

void start();
