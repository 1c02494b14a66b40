"""The towers: BERT encoder, pooling and heads (model.py), tokens, encoding, the pooled
cache, the numpy query tower, the losses and query-time encoding. torch lives here and in
train/ and embed.py only."""
