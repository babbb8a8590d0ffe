// A board top in Verilator (onda.sim.verilator.board_top.BoardSimTop), driven from Python through
// a C ABI (ctypes) the way a host drives a board: bytes into its UART's rx pin, a bit every
// SIM_DIVISOR clocks, and bytes out of its tx pin, sampled mid-bit; nothing else of the design is
// touched. With -DWITH_SDRAM the top's SDRAM pins are served by the chip model of sdram_chip.h
// (every timing checked; the first violation stops the clock and is reported), else the top holds
// its own memory (SPRAM).
// Built by onda.sim.verilator.build (build_board) with -DTOP_HEADER, -DTOP_CLASS, -DDIVISOR.

#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <string>

#include "verilated.h"
#include TOP_HEADER

#ifdef WITH_SDRAM
#include "sdram_chip.h"
using onda_sdram::SdramChip;
using onda_sdram::sdram_params_from_array;
#endif

namespace {

struct Board {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<TOP_CLASS> top;
#ifdef WITH_SDRAM
    std::unique_ptr<SdramChip> chip;
#endif
    uint64_t cycles = 0;

    // host -> board: the byte being shifted onto rx (10 bits: start, 8 data, stop) and the rest.
    std::deque<uint8_t> to_board;
    int tx_bit = -1;      // bit of the current byte on the rx line (-1: line idle)
    int tx_count = 0;     // clocks left in this bit
    uint16_t tx_frame = 0;
    // board -> host: the receiver on the tx pin.
    std::deque<uint8_t> from_board;
    int rx_phase = -1;    // -1 hunting for a start bit, else clocks until the next sample
    int rx_bit = 0;
    uint16_t rx_shift = 0;
    bool prev_tx = true;
    uint64_t framing = 0; // bytes from the board with a bad stop bit

    explicit Board(const double *sdram) : ctx(new VerilatedContext) {
        top.reset(new TOP_CLASS(ctx.get()));
#ifdef WITH_SDRAM
        chip.reset(new SdramChip(sdram_params_from_array(sdram)));
#else
        (void)sdram;
#endif
        top->clk = 0;
        top->rx = 1;
        top->eval();
    }

    bool failed() const {
#ifdef WITH_SDRAM
        return chip->failed();
#else
        return false;
#endif
    }

    void drive_rx() {
        if (tx_bit < 0) {
            if (to_board.empty()) {
                top->rx = 1;
                return;
            }
            tx_frame = (uint16_t)(0x200 | (to_board.front() << 1));  // stop(1) data start(0), LSB first
            to_board.pop_front();
            tx_bit = 0;
            tx_count = DIVISOR;
        }
        top->rx = (tx_frame >> tx_bit) & 1;
        if (--tx_count == 0) {
            tx_count = DIVISOR;
            if (++tx_bit == 10) tx_bit = -1;
        }
    }

    void sample_tx() {
        bool line = top->tx;
        if (rx_phase < 0) {
            if (prev_tx && !line) {  // a start bit begins: sample in the middle of each bit
                rx_phase = DIVISOR / 2;
                rx_bit = 0;
                rx_shift = 0;
            }
        } else if (--rx_phase == 0) {
            if (rx_bit == 0 && line) {
                rx_phase = -1;  // a glitch, not a start bit
            } else {
                if (rx_bit >= 1 && rx_bit <= 8) rx_shift |= (uint16_t)line << (rx_bit - 1);
                if (rx_bit == 9) {
                    if (line) from_board.push_back((uint8_t)rx_shift); else framing++;
                    rx_phase = -1;
                } else {
                    rx_bit++;
                    rx_phase = DIVISOR;
                }
            }
        }
        prev_tx = line;
    }

    // One clock: the inputs for this cycle, the rising edge (the chip sees the pins as they were
    // before it), the chip's answer on dq for the cycle after, the falling edge.
    void tick() {
        drive_rx();
#ifdef WITH_SDRAM
        int cke = top->sdram_cke, cs_n = top->sdram_cs_n, ras_n = top->sdram_ras_n, cas_n = top->sdram_cas_n,
            we_n = top->sdram_we_n, ba = top->sdram_ba, a = top->sdram_a, dqm = top->sdram_dqm,
            dq = top->sdram_dq_o, oe = top->sdram_dq_oe;
#endif
        top->clk = 1;
        top->eval();
#ifdef WITH_SDRAM
        uint16_t word = 0;
        if (!chip->failed()) {
            if (!chip->clock(cke, cs_n, ras_n, cas_n, we_n, ba, a, dqm, dq, oe, &word)) word = 0xA5C3;  // nobody drives
        }
        top->sdram_dq_i = word;
#endif
        top->clk = 0;
        top->eval();
        sample_tx();
        cycles++;
    }

    bool uart_busy() const { return !to_board.empty() || tx_bit >= 0 || rx_phase >= 0 || !top->tx; }

    // Clock until `max` cycles, a chip error, or everything has been quiet for `quiet` cycles:
    // nothing left to send, no byte on either line, the engine not running.
    uint64_t run(uint64_t max, uint64_t quiet) {
        uint64_t n = 0, still = 0;
        while (n < max && !failed()) {
            tick();
            n++;
            if (uart_busy() || top->running) {
                still = 0;
            } else if (quiet && ++still >= quiet) {
                break;
            }
        }
        return n;
    }
};

}  // namespace

extern "C" {

void *board_create(const double *sdram_params) { return new Board(sdram_params); }

void board_destroy(void *h) { delete static_cast<Board *>(h); }

void board_send(void *hp, const uint8_t *src, uint64_t n) {
    auto *h = static_cast<Board *>(hp);
    h->to_board.insert(h->to_board.end(), src, src + n);
}

uint64_t board_run(void *h, uint64_t max_cycles, uint64_t quiet) { return static_cast<Board *>(h)->run(max_cycles, quiet); }

uint64_t board_receive(void *hp, uint8_t *dst, uint64_t cap) {
    auto *h = static_cast<Board *>(hp);
    uint64_t n = 0;
    while (n < cap && !h->from_board.empty()) {
        dst[n++] = h->from_board.front();
        h->from_board.pop_front();
    }
    return n;
}

// bit 0 running, 1 done, 2 stopped on an error, 3 the UART busy (either way), 4 memory ready,
// 5 the memory model stopped on a violation.
uint32_t board_status(void *hp) {
    auto *h = static_cast<Board *>(hp);
    uint32_t ready = 1;
#ifdef WITH_SDRAM
    ready = h->top->sdram_ready;
#endif
    return (uint32_t)h->top->running | (uint32_t)h->top->done << 1 | (uint32_t)h->top->failed << 2 |
           (uint32_t)h->uart_busy() << 3 | ready << 4 | (uint32_t)h->failed() << 5;
}

uint64_t board_cycles(void *h) { return static_cast<Board *>(h)->cycles; }

// UART framing errors: bytes the board's receiver refused, bytes the host end saw with a bad stop bit.
uint64_t board_framing_errors(void *hp) {
    auto *h = static_cast<Board *>(hp);
    return (uint64_t)h->top->framing_errors << 32 | h->framing;
}

// The memory model's violation message (empty when none), NUL-terminated into buf; its length.
int board_memory_error(void *hp, char *buf, int cap) {
    std::string msg;
#ifdef WITH_SDRAM
    msg = static_cast<Board *>(hp)->chip->error();
#else
    (void)hp;
#endif
    int n = (int)msg.size() < cap - 1 ? (int)msg.size() : cap - 1;
    if (cap > 0) {
        std::memcpy(buf, msg.data(), n);
        buf[n] = 0;
    }
    return (int)msg.size();
}

}  // extern "C"
