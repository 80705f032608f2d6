/* guardmail for Thunderbird: "Block sender and keep as evidence".
 *
 * The message's exact source (messages.getRaw) goes to the native messaging host
 * `guardmail native-host` (installed by `guardmail install-client thunderbird`), which hands it
 * to the guardmail daemon: it is archived in the evidence vault and its sender added to an
 * offender. Only when guardmail says it is archived is the message moved to the account's
 * Quarantine folder. The outcome is shown as a notification.
 *
 * Triggers: the message display action (the button above a displayed message) reports with the
 * default offender (the one already covering the sender, or a new one named after it); the
 * context menu on selected messages offers "New offender" and each known offender.
 */
"use strict";

const HOST = "guardmail";
const QUARANTINE = "Quarantine";
const RAW_TIMEOUT_MS = 30000;
const MENU_ROOT = "guardmail-report";
const MENU_NEW = "guardmail-new";
const OFFENDER_PREFIX = "guardmail-offender:";
// Lines Thunderbird adds at the top of messages in its local store; not part of the message.
const MOZILLA_LINES = ["X-Mozilla-Status:", "X-Mozilla-Status2:", "X-Mozilla-Keys:"];

let offenderItems = [];

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function startsWithAscii(bytes, offset, text) {
  if (bytes.length - offset < text.length) {
    return false;
  }
  for (let i = 0; i < text.length; i++) {
    if (bytes[offset + i] !== text.charCodeAt(i)) {
      return false;
    }
  }
  return true;
}

/* Remove Thunderbird's own leading X-Mozilla-* lines; returns [bytes, removed count]. */
function stripMozillaLines(bytes) {
  let offset = 0;
  for (;;) {
    if (!MOZILLA_LINES.some((name) => startsWithAscii(bytes, offset, name))) {
      break;
    }
    const end = bytes.indexOf(0x0a, offset);
    if (end < 0) {
      break;
    }
    offset = end + 1;
  }
  return [bytes.subarray(offset), offset];
}

function toBase64(bytes) {
  if (typeof bytes.toBase64 === "function") {
    return bytes.toBase64();
  }
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

async function quarantineFolder(accountId) {
  const account = await messenger.accounts.get(accountId, false);
  const subFolders = await messenger.folders.getSubFolders(account.rootFolder.id, false);
  const found = subFolders.find((f) => f.name === QUARANTINE);
  return found || messenger.folders.create(account.rootFolder.id, QUARANTINE);
}

async function reportOne(message, choice) {
  const file = await withTimeout(
    messenger.messages.getRaw(message.id, { data_format: "File" }),
    RAW_TIMEOUT_MS,
    "reading the message source"
  );
  const [bytes, stripped] = stripMozillaLines(new Uint8Array(await file.arrayBuffer()));
  const request = {
    op: "report",
    raw: toBase64(bytes),
    channel: "mail",
    client: "thunderbird",
    account: message.folder ? message.folder.accountId : "",
    ...choice,
  };
  if (stripped) {
    request.note = `Thunderbird's local-store status lines removed: ${stripped} bytes`;
  }
  const answer = await messenger.runtime.sendNativeMessage(HOST, request);
  if (!answer || !answer.ok) {
    throw new Error(answer ? answer.error : "no answer from guardmail native-host");
  }
  if (message.folder) {
    const target = await quarantineFolder(message.folder.accountId);
    if (target.id !== message.folder.id) {
      await messenger.messages.move([message.id], target.id);
    }
  }
  return answer.result;
}

async function notify(text) {
  try {
    await messenger.notifications.create({ type: "basic", title: "guardmail", message: text });
  } catch (error) {
    // No notification service (a headless run): the console line below still says it.
    console.error(`guardmail: cannot show a notification: ${error.message}`);
  }
  console.log(`guardmail: ${text}`);
}

async function report(messages, choice) {
  const done = [];
  for (const message of messages) {
    try {
      const result = await reportOne(message, choice);
      done.push(result);
      console.log(`guardmail: reported vault entry ${result.seq} sha256 ${result.sha256}`);
    } catch (error) {
      console.error(`guardmail: report failed: ${error.message}`);
      await notify(`Not reported (the message stays where it is): ${error.message}`);
      return done;
    }
  }
  const unloaded = done.find((r) => r.file_loaded === false);
  if (unloaded) {
    // Archived, but the config does not load the file the sender was added to.
    await notify(`Kept as evidence, but NOT blocked: ${unloaded.hint}`);
  }
  if (done.length === 1) {
    const r = done[0];
    const added = r.rule_added ? `, added ${r.rule_added}` : "";
    await notify(`Kept as evidence (vault entry ${r.seq}), offender ${r.offender}${added}.`);
  } else if (done.length > 1) {
    await notify(`${done.length} messages kept as evidence and moved to ${QUARANTINE}.`);
  }
  return done;
}

async function messagesOf(list) {
  // A MessageList ({id, messages}) or, before Thunderbird 128, an array.
  if (Array.isArray(list)) {
    return list;
  }
  const messages = [...list.messages];
  let page = list;
  while (page.id) {
    page = await messenger.messages.continueList(page.id);
    messages.push(...page.messages);
  }
  return messages;
}

messenger.messageDisplayAction.onClicked.addListener(async (tab) => {
  const displayed = await messenger.messageDisplay.getDisplayedMessages(tab.id);
  await report(await messagesOf(displayed), {});
});

function createMenus() {
  messenger.menus.create({
    id: MENU_ROOT,
    title: "Block sender and keep as evidence",
    contexts: ["message_list"],
  });
  messenger.menus.create({
    id: MENU_NEW,
    parentId: MENU_ROOT,
    title: "As a new offender",
    contexts: ["message_list"],
  });
}

messenger.runtime.onInstalled.addListener(createMenus);

messenger.menus.onShown.addListener(async (info) => {
  if (!info.menuIds.includes(MENU_ROOT)) {
    return;
  }
  let offenders = [];
  try {
    const answer = await messenger.runtime.sendNativeMessage(HOST, { op: "offenders" });
    offenders = answer && answer.ok ? answer.offenders : [];
  } catch (error) {
    console.error(`guardmail: cannot list offenders: ${error.message}`);
  }
  for (const id of offenderItems) {
    await messenger.menus.remove(id);
  }
  offenderItems = [];
  for (const offender of offenders) {
    const id = OFFENDER_PREFIX + offender.name;
    messenger.menus.create({
      id,
      parentId: MENU_ROOT,
      title: `Add to ${offender.name}`,
      contexts: ["message_list"],
    });
    offenderItems.push(id);
  }
  await messenger.menus.refresh();
});

messenger.menus.onClicked.addListener(async (info) => {
  if (!info.selectedMessages) {
    return;
  }
  let choice;
  if (info.menuItemId === MENU_NEW) {
    choice = {};
  } else if (String(info.menuItemId).startsWith(OFFENDER_PREFIX)) {
    choice = { offender: String(info.menuItemId).slice(OFFENDER_PREFIX.length) };
  } else {
    return;
  }
  await report(await messagesOf(info.selectedMessages), choice);
});
