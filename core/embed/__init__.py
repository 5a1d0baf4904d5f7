"""Ad embeddings for similar-ad retrieval: ION and ToTYEmb, their training loop and the paper's evaluation.

Modules:
    text        tokenizer (jieba / regex), POS keyword labels (jieba, denckring-en-pos), Vocabulary
    layers      shared blocks: Transformer word encoder, masked softmax / pooling / top-k selection
    ion         ION model (KSG, SCA, DFA) and IONConfig (ablations: ksg, sca, dfa)
    totyemb     ToTYEmb model and ToTYEmbConfig (ablations: pointer, image)
    losses      batch-hardest triplet loss (eq. 14, sign corrected), keyword and classification losses
    data        EmbedDataset (the tensor contract), build_dataset, class-balanced P x K batches
    train       TrainConfig, train_model (best epoch by validation loss), embed
    checkpoint  save_checkpoint / load_checkpoint (state dict + config + vocabulary)
    evaluate    hit_precision_at_k, seen_unseen_precision
    pipeline    split_by_category, build_model, fit_and_evaluate, embed_ads
    attention   ion_attention: per-word keyword / gate weights, SCA alpha, kept regions, DFA beta
    baselines   MiniLM text vectors, EfficientNet-Lite0 image vectors, concatenation fusion (offline weights)
Nothing here depends on Streamlit or on the region detector (regions arrive as arrays).
"""
