"""textxfer components: module code for Transform and Trainer, and custom components."""
