// The subscribe form's time zone, guessed from the browser (local-time newsletters send at the
// reader's morning). Without JavaScript the field stays empty: the newsletter's own zone is used.
for (const field of document.querySelectorAll("input[data-guess-timezone]")) {
  if (!field.value) {
    try {
      field.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (error) {
      field.value = "";
    }
  }
}
