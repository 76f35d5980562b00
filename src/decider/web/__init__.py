"""Server-rendered pages: login, the review queue and case pages, admin views."""
