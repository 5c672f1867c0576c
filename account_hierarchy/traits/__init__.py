"""The traits stage: computed and SQL traits of accounts and users, as of every hour."""
