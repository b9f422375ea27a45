// Greedy ids from llama.cpp for a GGUF file, to compare with `sphinx run --print-ids`: the prompt
// ids (comma-separated, BOS included) are evaluated in one batch, then N tokens are picked by argmax
// (the first maximum, as torch.argmax and our engine do) one decode step at a time.
//   greedy MODEL.gguf IDS N [THREADS]
// Prints the generated ids, comma-separated, on one line.
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

static void quiet(ggml_log_level level, const char * text, void *) {
    if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

int main(int argc, char ** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf IDS N [THREADS]\n", argv[0]);
        return 2;
    }
    std::vector<llama_token> ids;
    std::stringstream ss(argv[2]);
    for (std::string item; std::getline(ss, item, ',');) ids.push_back((llama_token) std::stol(item));
    const int n = std::atoi(argv[3]);
    const int threads = argc > 4 ? std::atoi(argv[4]) : 2;

    llama_log_set(quiet, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = ids.size() + n + 8;
    cp.n_batch = ids.size() + 8;
    cp.n_threads = cp.n_threads_batch = threads;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "cannot make a context\n"); return 1; }
    const int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

    llama_batch batch = llama_batch_get_one(ids.data(), (int) ids.size());
    std::vector<llama_token> out;
    llama_token next = 0;
    for (int step = 0; step < n; step++) {
        if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "decode failed at step %d\n", step); return 1; }
        const float * logits = llama_get_logits_ith(ctx, -1);
        int best = 0;
        for (int i = 1; i < vocab; i++) if (logits[i] > logits[best]) best = i;
        next = best;
        out.push_back(next);
        batch = llama_batch_get_one(&next, 1);
    }
    for (size_t i = 0; i < out.size(); i++) printf("%s%d", i ? "," : "", out[i]);
    printf("\n");
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
