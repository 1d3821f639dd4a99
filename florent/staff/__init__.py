"""Staff: the people who browse the store in the admin. They are not API callers and
never own conversations."""
