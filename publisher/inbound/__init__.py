"""Mail that comes back: one parser (`parse`), three ways in (`files`, `listener`, `imap`)."""
