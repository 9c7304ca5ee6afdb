# Per-room assistant settings, personal memories and runs arrive with the assistant issue.
