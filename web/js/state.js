// What the whole client shares: the signed-in user and a cache of agency names.
import { getAll } from "./api.js";

export const state = { me: null, agencies: null, previousRoute: null };

/** Agencies as a list (cached for the session; any signed-in user may read them). */
export async function agencies() {
  if (!state.agencies) {
    try {
      state.agencies = (await getAll("/v1/agencies", { limit: 500 })).sort((a, b) => a.name.localeCompare(b.name));
    } catch {
      return [];
    }
  }
  return state.agencies;
}

export async function agencyName(id) {
  if (!id) return "";
  const found = (await agencies()).find((a) => a.id === id);
  return found ? found.name : "another agency";
}

/** Screens each role may use (others are not offered), first one is home. */
export const SCREENS = {
  outreach: [["follow-ups", "My follow-ups"]],
  coordinator: [["huddle", "Today's huddle"], ["alerts", "Alerts"], ["follow-ups", "Follow-ups"]],
  analyst: [["reports", "Reports"]],
  admin: [["admin", "Administration"]],
};
export const screensFor = (role) => SCREENS[role] || [];
