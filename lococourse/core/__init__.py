"""Core: the noise schedule, input checks and the interfaces (Protocols) every layer shares. Imports nothing of lococourse."""
