"""The account hierarchy stage: users, accounts, memberships and parent/child accounts."""
