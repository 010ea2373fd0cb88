// What every page of the console gets, and gives back.

import type { Api } from "./api";

export interface ViewContext {
  api: Api;
  /** The token stopped working: back to the sign-in form with this message. */
  onAuthFailure(message: string): void;
  /** The link to a campaign's detail page. */
  hrefFor(campaignId: string): string;
}

export interface View {
  el: HTMLElement;
  /** Stops the view's timers and requests when the manager leaves it. */
  dispose(): void;
}
