"""Stage 2: channel groups. Each node's channel rule (from its kind) ties or pins
the channels it touches; the groups live in a weighted union-find."""
