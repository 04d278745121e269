"""The pure decision core: rules, policies and bookkeeping. No I/O, no clock, no randomness."""
