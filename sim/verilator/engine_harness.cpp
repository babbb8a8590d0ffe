// The onda engine in Verilator, with a flat-array memory behind its memory port, driven from
// Python through a C ABI (ctypes): load/read memory, write/read registers, run to a condition.
//
// Only the engine's top-level ports are touched (no per-signal access: that is what keeps the
// model fast). The memory follows the timing the cycle model assumes of the configuration
// (sim/emulator/cycles.py): a command arriving at an idle port waits `latency` cycles for its
// first beat, a queued command that does not continue the previous one costs `row_overhead`
// cycles, then one P-byte beat a cycle. Optional seeded random stalls exercise the handshakes.
//
// The model is onda.sim.verilator.sim_top.SimTop: the engine behind a power-on reset of
// RESET_CYCLES and a register on every input, so the harness drives each input one cycle before
// the engine sees it and Verilator evaluates the engine once per clock edge.
// Built by onda.sim.verilator.build with -DTOP_HEADER, -DTOP_CLASS, -DPORT_BYTES and -DRESET_CYCLES.

#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <random>
#include <vector>

#include "verilated.h"
#include TOP_HEADER

#define SIG(name) top->name

namespace {

constexpr int P = PORT_BYTES;
static_assert(P >= 1 && P <= 4, "the harness packs memory beats in 64 bits: port up to 32 bits");

struct Cmd {
    uint64_t addr;
    uint32_t beats;
    bool write;
    uint64_t accepted = 0, first = 0;  // cycles it was taken and its first beat moved
};

struct Harness {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<TOP_CLASS> top;
    std::vector<uint8_t> mem;
    uint32_t latency, row_overhead;
    double stall;  // probability that the memory refuses a handshake in a cycle
    std::mt19937_64 rng;
    std::uniform_real_distribution<double> uni{0.0, 1.0};

    std::deque<Cmd> queue;  // accepted commands, in order
    static constexpr size_t kQueue = 4;
    bool active = false;    // the head command is streaming
    uint32_t done_beats = 0;
    uint64_t wait = 0;      // cycles before the head command's first beat
    uint64_t prev_end = ~0ull;
    bool port_idle = true;  // no command in flight: the next one pays the full latency
    uint64_t cycles = 0;
    std::vector<uint64_t> trace;  // (cycle << 35 | start << 34 | module << 32 | index) per event, when enabled
    std::vector<uint64_t> mtrace;  // (accepted, first beat, last beat, addr, beats, write) per command, when enabled
    bool tracing = false;
    int error = 0;          // 1: access outside the memory; 2: misaligned
    uint64_t error_addr = 0;

    // What the engine sees this cycle: the values its input registers took at the last edge
    // (onda.sim.verilator.sim_top registers every input; the harness drives them a cycle ahead).
    bool in_cmd_ready = false, in_rvalid = false, in_wready = false;
    uint64_t in_rdata = 0;
    uint32_t in_csr_addr = 0;

    Harness(uint64_t size, uint32_t lat, uint32_t row, double st, uint64_t seed)
        : ctx(new VerilatedContext), mem(size, 0), latency(lat), row_overhead(row), stall(st), rng(seed) {
        top.reset(new TOP_CLASS(ctx.get()));
        top->clk = 0;
        top->eval();
        drive_memory();
        for (int i = 0; i < RESET_CYCLES; i++) tick();  // the top's power-on reset
    }

    bool refuse() { return stall > 0 && uni(rng) < stall; }

    // The memory's side of the port for the next cycle, decided from the model's state.
    void drive_memory() {
        bool cmd_ready = queue.size() < kQueue && !refuse();
        bool rvalid = false, wready = false;
        uint64_t rdata = 0;
        if (!queue.empty() && active && wait == 0) {
            Cmd &c = queue.front();
            uint64_t a = c.addr + uint64_t(done_beats) * P;
            if (!c.write) {
                if (!refuse()) {
                    rvalid = true;
                    for (int b = 0; b < P; b++) rdata |= uint64_t(a + b < mem.size() ? mem[a + b] : 0) << (8 * b);
                }
            } else {
                wready = !refuse();
            }
        }
        SIG(mem___05Fcmd___05Fready) = cmd_ready;
        SIG(mem___05Frdata___05Fvalid) = rvalid;
        SIG(mem___05Frdata___05Fpayload) = rdata;
        SIG(mem___05Fwdata___05Fready) = wready;
    }

    // One clock cycle. The engine's outputs are settled (the last eval saw every input); sample
    // the handshakes against what the engine sees this cycle, advance the memory model, drive
    // the next cycle's inputs, clock.
    void tick() {
        bool cmd_fire = in_cmd_ready && SIG(mem___05Fcmd___05Fvalid);
        uint64_t cmd_payload = SIG(mem___05Fcmd___05Fpayload);
        bool r_fire = in_rvalid && SIG(mem___05Frdata___05Fready);
        bool w_fire = in_wready && SIG(mem___05Fwdata___05Fvalid);
        uint64_t wpayload = SIG(mem___05Fwdata___05Fpayload);
        if (tracing) {
            uint32_t retire = SIG(trace___05Fretire), start = SIG(trace___05Fstart);
            if (start & 1) trace.push_back(cycles << 35 | 1ull << 34 | 0ull << 32 | SIG(trace___05Fload_start_index));
            if (start & 2) trace.push_back(cycles << 35 | 1ull << 34 | 1ull << 32 | SIG(trace___05Fcompute_start_index));
            if (start & 4) trace.push_back(cycles << 35 | 1ull << 34 | 2ull << 32 | SIG(trace___05Fstore_start_index));
            if (retire & 1) trace.push_back(cycles << 35 | 0ull << 32 | SIG(trace___05Fload_index));
            if (retire & 2) trace.push_back(cycles << 35 | 1ull << 32 | SIG(trace___05Fcompute_index));
            if (retire & 4) trace.push_back(cycles << 35 | 2ull << 32 | SIG(trace___05Fstore_index));
        }
        cycles++;
        // Advance the model by this cycle.
        if (wait > 0) wait--;
        if (r_fire || w_fire) {
            Cmd &c = queue.front();
            uint64_t a = c.addr + uint64_t(done_beats) * P;
            if (done_beats == 0) c.first = cycles - 1;
            if (w_fire) {
                for (int b = 0; b < P; b++) {
                    bool en = (wpayload >> (8 * P + b)) & 1;
                    if (en && a + b < mem.size()) mem[a + b] = uint8_t(wpayload >> (8 * b));
                }
            }
            if (++done_beats == c.beats) {
                if (tracing) {
                    uint64_t ev[6] = {c.accepted, c.first, cycles - 1, c.addr, c.beats, c.write};
                    mtrace.insert(mtrace.end(), ev, ev + 6);
                }
                prev_end = c.addr + uint64_t(c.beats) * P;
                queue.pop_front();
                active = false;
                done_beats = 0;
                port_idle = queue.empty();
            }
        }
        if (cmd_fire) {
            Cmd c{cmd_payload & 0xFFFFFFFFull, uint32_t((cmd_payload >> 32) & 0xFFFF), bool((cmd_payload >> 48) & 1),
                  cycles - 1};
            if (c.addr % P) { error = 2; error_addr = c.addr; }
            if (c.addr + uint64_t(c.beats) * P > mem.size() || c.beats == 0) { error = 1; error_addr = c.addr; }
            queue.push_back(c);
        }
        if (!active && !queue.empty()) {
            Cmd &c = queue.front();
            active = true;
            done_beats = 0;
            if (port_idle) wait = latency;
            else if (c.addr != prev_end) wait = row_overhead;
            else wait = 0;
            port_idle = false;
        }
        drive_memory();
        // Clock edge: the input registers take what is driven now.
        in_cmd_ready = SIG(mem___05Fcmd___05Fready);
        in_rvalid = SIG(mem___05Frdata___05Fvalid);
        in_rdata = SIG(mem___05Frdata___05Fpayload);
        in_wready = SIG(mem___05Fwdata___05Fready);
        in_csr_addr = SIG(csr___05Faddr);
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
    }

    // A register write reaches the engine one cycle after it is driven (its input registers).
    void write_reg(uint32_t addr, uint32_t value) {
        SIG(csr___05Faddr) = addr;
        SIG(csr___05Fw_data) = value;
        SIG(csr___05Fw_en) = 1;
        tick();  // the input registers take the write
        SIG(csr___05Fw_en) = 0;
        tick();  // the engine performs it
    }

    // Reading CYCLES_LO latches CYCLES_HI (in the engine, every cycle it sees that address):
    // CYCLES is read with the engine stopped, so the pair is consistent.
    uint32_t read_reg(uint32_t addr) {
        SIG(csr___05Faddr) = addr;
        tick();  // the address register takes it
        uint32_t v = SIG(csr___05Fr_data);
        tick();
        return v;
    }
};

}  // namespace

extern "C" {

void *onda_create(uint64_t mem_size, uint32_t latency, uint32_t row_overhead, double stall, uint64_t seed) {
    return new Harness(mem_size, latency, row_overhead, stall, seed);
}

void onda_destroy(void *h) { delete static_cast<Harness *>(h); }

int onda_mem_write(void *hp, uint64_t addr, const uint8_t *src, uint64_t n) {
    Harness *h = static_cast<Harness *>(hp);
    if (addr + n > h->mem.size()) return -1;
    std::memcpy(h->mem.data() + addr, src, n);
    return 0;
}

int onda_mem_read(void *hp, uint64_t addr, uint8_t *dst, uint64_t n) {
    Harness *h = static_cast<Harness *>(hp);
    if (addr + n > h->mem.size()) return -1;
    std::memcpy(dst, h->mem.data() + addr, n);
    return 0;
}

void onda_write_reg(void *h, uint32_t addr, uint32_t value) { static_cast<Harness *>(h)->write_reg(addr, value); }

uint32_t onda_read_reg(void *h, uint32_t addr) { return static_cast<Harness *>(h)->read_reg(addr); }

// Clock until STATUS (register `status_addr`) shows done or error (`stop_mask`), the compute
// module completes the instruction `break_index` (>= 0), the memory model sees a bad command, or
// `max_cycles` pass. Returns 0 stopped on status, 1 at the breakpoint, 2 at the cycle limit,
// 3 on a memory error.
int onda_run(void *hp, uint64_t max_cycles, uint32_t status_addr, uint32_t stop_mask, int64_t break_index) {
    Harness *h = static_cast<Harness *>(hp);
    auto *top = h->top.get();
    SIG(csr___05Faddr) = status_addr;
    for (uint64_t i = 0; i < max_cycles; i++) {
        // STATUS is on r_data once the address register holds it (done and error are sticky).
        if (h->in_csr_addr == status_addr && (SIG(csr___05Fr_data) & stop_mask)) return 0;
        bool hit = break_index >= 0 && (SIG(trace___05Fretire) & 2) &&
                   int64_t(SIG(trace___05Fcompute_index)) == break_index;
        h->tick();
        if (h->error) return 3;
        if (hit) return 1;
    }
    return 2;
}

void onda_trace(void *hp, int enable) {
    Harness *h = static_cast<Harness *>(hp);
    h->tracing = enable != 0;
    h->trace.clear();
    h->mtrace.clear();
}

uint64_t onda_mtrace_size(void *h) { return static_cast<Harness *>(h)->mtrace.size() / 6; }

void onda_mtrace_read(void *hp, uint64_t *dst) {
    Harness *h = static_cast<Harness *>(hp);
    std::memcpy(dst, h->mtrace.data(), h->mtrace.size() * sizeof(uint64_t));
}

uint64_t onda_trace_size(void *h) { return static_cast<Harness *>(h)->trace.size(); }

void onda_trace_read(void *hp, uint64_t *dst) {
    Harness *h = static_cast<Harness *>(hp);
    std::memcpy(dst, h->trace.data(), h->trace.size() * sizeof(uint64_t));
}

uint64_t onda_cycles(void *h) { return static_cast<Harness *>(h)->cycles; }

int onda_mem_error(void *hp, uint64_t *addr) {
    Harness *h = static_cast<Harness *>(hp);
    *addr = h->error_addr;
    return h->error;
}

}  // extern "C"
