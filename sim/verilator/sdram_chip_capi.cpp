// A C ABI over sdram_chip.h for ctypes (tests/boards/test_sdram_chip.py compiles it with
// g++ -O2 -shared -fPIC): the C++ chip model driven from Python, in lockstep with SdramCore.
// Pins are 10 int32 in SdramPins's order: cke, cs_n, ras_n, cas_n, we_n, ba, a, dqm, dq, dq_oe.

#include <chrono>

#include "sdram_chip.h"

using onda_sdram::SdramChip;

extern "C" {

int onda_sdram_param_count() { return onda_sdram::kSdramParamCount; }
const char *onda_sdram_param_field(int i) { return onda_sdram::kSdramParamFields[i]; }

void *onda_sdram_create(const double *v, const char *name) {
    return new SdramChip(onda_sdram::sdram_params_from_array(v, name));
}
void onda_sdram_destroy(void *c) { delete static_cast<SdramChip *>(c); }

// One edge: 1 and *out when the chip drives dq in the following cycle.
int onda_sdram_clock(void *c, const int32_t *p, uint16_t *out) {
    return static_cast<SdramChip *>(c)->clock(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], out);
}

// n edges of pins (10 a row); out[i] the word driven after edge i, -1 for none. Returns the
// edges taken before a violation (n if none).
int64_t onda_sdram_run(void *c, const int32_t *pins, int64_t n, int32_t *out) {
    auto *chip = static_cast<SdramChip *>(c);
    for (int64_t i = 0; i < n; i++) {
        const int32_t *p = pins + 10 * i;
        uint16_t w = 0;
        out[i] = chip->clock(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], &w) ? w : -1;
        if (chip->failed()) return i;
    }
    return n;
}

// n NOP edges (chip selected, NOP) timed: nanoseconds per clock() call.
double onda_sdram_nop_loop(void *c, int64_t n) {
    auto *chip = static_cast<SdramChip *>(c);
    uint16_t w = 0;
    int64_t driven = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n; i++) driven += chip->clock(1, 0, 1, 1, 1, 0, 0, 0, 0, 0, &w);
    const auto t1 = std::chrono::steady_clock::now();
    if (driven < 0) return -1;  // keeps the loop's result used
    return std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(n);
}

int onda_sdram_failed(void *c) { return static_cast<SdramChip *>(c)->failed(); }
const char *onda_sdram_error(void *c) { return static_cast<SdramChip *>(c)->error().c_str(); }
int64_t onda_sdram_error_cycle(void *c) { return static_cast<SdramChip *>(c)->error_cycle(); }
uint64_t onda_sdram_cycle(void *c) { return static_cast<SdramChip *>(c)->cycle(); }
int onda_sdram_ready(void *c) { return static_cast<SdramChip *>(c)->ready(); }
int onda_sdram_cas_latency(void *c) { return static_cast<SdramChip *>(c)->cas_latency(); }
int64_t onda_sdram_refreshes(void *c) { return static_cast<SdramChip *>(c)->refreshes(); }
int64_t onda_sdram_init_refreshes(void *c) { return static_cast<SdramChip *>(c)->init_refreshes(); }
int64_t onda_sdram_commands(void *c, int code) { return static_cast<SdramChip *>(c)->commands(code); }
int onda_sdram_peek(void *c, int bank, int row, int col) { return static_cast<SdramChip *>(c)->peek(bank, row, col); }
void onda_sdram_poke(void *c, int bank, int row, int col, int value) {
    static_cast<SdramChip *>(c)->poke(bank, row, col, static_cast<uint16_t>(value));
}
uint64_t onda_sdram_nonzero_words(void *c) { return static_cast<SdramChip *>(c)->nonzero_words(); }

}  // extern "C"
