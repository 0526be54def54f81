"""Wire formats (Anthropic Messages, OpenAI Chat, OpenAI Responses): find the
compressible blocks, apply the protection policy, splice results into the raw bytes."""
