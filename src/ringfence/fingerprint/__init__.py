"""Fingerprint: a per-recipient, collusion-resistant codeword embedded in the weights while they
stream out, and read back against the original.

Pure numeric core (arrays in, arrays out):

- `code`: binary Tardos code, Škorić's symmetric score, exact Chernoff accusation bound;
  `CodeParams(n, c, eps).design` gives the code length (16,448 symbols at the defaults).
- `carrier`: keyed splitmix64 streams; which weight carries which symbol, position-addressed.
- `embed`: one-format-step kernels on raw words (BF16, F16, F32; GGUF Q8_0 quants).
- `read`: soft symbols from a suspect against the original (inverse-variance matched filter).
- `accuse`: every recipient scored, and the one rule for whom the evidence accuses.

Adapters: `plan` (which tensors carry the code, `check_capacity` at publish time), `stream`
(`fingerprinted_bytes` for any byte range in constant memory), `services` (recipients,
issuing copies, detection against a published release), `quality` (perplexity, eval extra).
"""
