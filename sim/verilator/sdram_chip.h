// A cycle-level x16 SDR SDRAM at its pins, for the Verilator board simulation: the C++ twin of
// onda.sim.board.sdram_model.SdramCore (the reference), with the same behaviour, the same checks
// and the same first error message. Header-only C++17, standard library only.
//
// Each clock edge the harness calls SdramChip::clock() with the pins as sampled at that edge; it
// returns true (and sets *out) when the chip drives dq in the cycle that follows (SdramCore
// returns the word, or None). On the first violation it records the message SdramTimingError
// would carry ("SDRAM model, cycle N: COMMAND: PARAMETER violated: detail"), failed() turns true
// and the chip stops acting (clock() returns false, cycle() stays at the failing edge, as the
// Python core's cycle does when it raises).
//
// Everything that SdramCore reads from its SdramChip and clock_mhz is in SdramParams; the
// checks are made in nanoseconds from the cycle count and the clock period, with the Python
// model's operations in its order (double arithmetic, the same 1e-6 / 1e-9 slack, Python's float
// floor division for the refresh debt), so edge cases fall the same way. Two checks that run
// every edge are precomputed exactly instead: tRAS_max as the first elapsed cycle count d with
// d * tck > tRAS_max + 1e-6 (d * tck rounds monotonically in d, so this is the same predicate),
// and the refresh debt only every 64 edges, as Python does.
//
// Storage: one lazily allocated array per (bank, row), unwritten words read 0. peek/poke out of
// the chip's geometry read 0 / are ignored (the Python backdoor keys any tuple; no command can
// reach such a word).

#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#if defined(__GNUC__)
#define ONDA_SDRAM_COLD __attribute__((noinline, cold))
#else
#define ONDA_SDRAM_COLD
#endif

namespace onda_sdram {

// The scalar fields of SdramParams in the order of sdram_params_from_array's doubles, then the
// 8 doubles cl_tck_min[0..7]: the shortest clock period (ns) at which CAS latency k is allowed,
// negative when the chip does not allow it. sim/verilator/sdram_chip.py FIELDS is the same list
// (tests/boards/test_sdram_chip.py checks it against kSdramParamFields as compiled).
#define ONDA_SDRAM_PARAM_SCALARS(X)                                                                \
    X(double, clock_mhz)   /* the clock the pins are sampled at, MHz (tck = 1000 / clock_mhz) */ \
    X(int, banks)          /* a power of two, at most kMaxBanks */                               \
    X(int, rows)                                                                                 \
    X(int, columns)                                                                              \
    X(double, tRP)         /* ns, as SdramChip */                                                \
    X(double, tRCD)                                                                              \
    X(double, tRAS)                                                                              \
    X(double, tRAS_max)                                                                          \
    X(double, tRC)                                                                               \
    X(double, tRRD)                                                                              \
    X(double, tRFC)                                                                              \
    X(double, tWR)                                                                               \
    X(int, tMRD_ck)        /* clock cycles */                                                    \
    X(double, tREFI)                                                                             \
    X(double, power_up)                                                                          \
    X(int, init_refreshes)

constexpr int kMaxBanks = 16;
constexpr int kClSlots = 8;  // the mode register's CL field is 3 bits

struct SdramParams {
#define ONDA_SDRAM_DECLARE(type, field) type field = 0;
    ONDA_SDRAM_PARAM_SCALARS(ONDA_SDRAM_DECLARE)
#undef ONDA_SDRAM_DECLARE
    double cl_tck_min[kClSlots] = {-1, -1, -1, -1, -1, -1, -1, -1};
    std::string name;  // the chip's name, for the CAS latency message (not in the array)
};

#define ONDA_SDRAM_NAME(type, field) #field,
inline constexpr const char *kSdramParamFields[] = {
    ONDA_SDRAM_PARAM_SCALARS(ONDA_SDRAM_NAME) "cl_tck_min[0]", "cl_tck_min[1]", "cl_tck_min[2]",
    "cl_tck_min[3]", "cl_tck_min[4]", "cl_tck_min[5]", "cl_tck_min[6]", "cl_tck_min[7]"};
#undef ONDA_SDRAM_NAME
inline constexpr int kSdramParamCount = sizeof(kSdramParamFields) / sizeof(kSdramParamFields[0]);

// SdramParams from kSdramParamCount doubles in kSdramParamFields's order.
inline SdramParams sdram_params_from_array(const double *v, const char *name = "") {
    SdramParams p;
    int i = 0;
#define ONDA_SDRAM_READ(type, field) p.field = static_cast<type>(v[i++]);
    ONDA_SDRAM_PARAM_SCALARS(ONDA_SDRAM_READ)
#undef ONDA_SDRAM_READ
    for (int k = 0; k < kClSlots; k++) p.cl_tck_min[k] = v[i++];
    p.name = name ? name : "";
    return p;
}

namespace detail {

// Python's format(x, "g").
inline std::string g(double x) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", x);
    return buf;
}

// Python's float floor division a // b (CPython's _float_div_mod), b != 0.
inline double py_floordiv(double vx, double wx) {
    double mod = std::fmod(vx, wx);
    double div = (vx - mod) / wx;
    if (mod) {
        if ((wx < 0) != (mod < 0)) div -= 1.0;
    }
    double floordiv;
    if (div) {
        floordiv = std::floor(div);
        if (div - floordiv > 0.5) floordiv += 1.0;
    } else {
        floordiv = std::copysign(0.0, vx / wx);
    }
    return floordiv;
}

}  // namespace detail

class SdramChip {
public:
    // Command codes: (ras_n, cas_n, we_n) with chip select low.
    enum Code { LMR = 0, REF = 1, PRE = 2, ACT = 3, WRITE = 4, READ = 5, BST = 6, NOP = 7 };

    explicit SdramChip(const SdramParams &p)
        : p_(p), tck_(1000.0 / p.clock_mhz), bank_mask_(p.banks - 1),
          store_(static_cast<size_t>(p.banks > 0 ? p.banks : 0) * static_cast<size_t>(p.rows > 0 ? p.rows : 0)) {
        if (p.banks < 1 || p.banks > kMaxBanks || (p.banks & (p.banks - 1)) || p.rows < 1 || p.columns < 1 ||
            !(p.clock_mhz > 0))
            fail_at(0, "(parameters)", "parameters",
                    "banks must be a power of two up to " + std::to_string(kMaxBanks) +
                        ", rows and columns >= 1, clock_mhz > 0");
        for (int b = 0; b < kMaxBanks; b++) banks_[b] = Bank{};
        // tRAS_max: the first d with d * tck > tRAS_max + 1e-6 (monotone in d).
        const double limit = p.tRAS_max + 1e-6;
        auto over = [&](int64_t d) { return static_cast<double>(d) * tck_ > limit; };
        const double est = std::floor(limit / tck_);
        if (!(est < 4e15)) {  // infinite, NaN or beyond any run: never
            ras_max_cycles_ = kUnreachable;
        } else {
            int64_t d = est < 0 ? 0 : static_cast<int64_t>(est);
            while (d > 0 && over(d - 1)) d--;
            while (!over(d)) d++;
            ras_max_cycles_ = d;
        }
    }

    // One clock edge with the pins sampled at it; true (and *out) when the chip drives dq in the
    // cycle that follows.
    bool clock(int cke, int cs_n, int ras_n, int cas_n, int we_n, int ba, int a, int dqm, int dq, int dq_oe,
               uint16_t *out) {
        if (failed_) return false;
        const int64_t cyc = cycle_;
        // The chip drives a READ's word in the cycle before its sample edge e and holds it just
        // past e: the controller driving dq before edge cyc collides when e is cyc or cyc - 1.
        if (dq_oe && (drive_[cyc & 15] == cyc || drive_[(cyc - 1) & 15] == cyc - 1)) {
            const int64_t e = drive_[cyc & 15] == cyc ? cyc : cyc - 1;
            const bool write = cs_n == 0 && decode(ras_n, cas_n, we_n) == WRITE;
            return fail(write ? "WRITE" : "dq driven", "bus contention",
                        "the chip drives dq for a READ sampled at edge " + std::to_string(e));
        }
        if (cke == 0 && !power_up_phase_)
            return fail("CKE low", "unsupported", "clock suspend / power-down are not modelled");
        if ((cyc & 63) == 0 && ready_ && !refresh_debt_ok()) return false;
        if (cs_n == 0 && cke != 0) {
            const int code = decode(ras_n, cas_n, we_n);
            if (code != NOP && !command(code, ba, a, dqm, dq, dq_oe)) return false;
        }
        // DQM masks read data two edges later: dqm at edge cyc - 1 masks the word sampled at cyc + 1.
        const int masked = dqm_prev_;
        dqm_prev_ = dqm;
        bool drives = false;
        const Read &r = reads_[(cyc + 1) & 7];
        if (r.edge == cyc + 1) {
            uint16_t word = peek(r.bank, r.row, r.col);
            if (masked & 1) word &= 0xFF00;
            if (masked & 2) word &= 0x00FF;
            *out = word;
            drives = true;
        }
        if (cyc >= ras_deadline_) {
            for (int b = 0; b < p_.banks; b++) {
                const Bank &bk = banks_[b];
                if (bk.row >= 0 && cyc - bk.act >= ras_max_cycles_)
                    return fail("(row open)", "tRAS_max",
                                "bank " + std::to_string(b) + "'s row " + std::to_string(bk.row) +
                                    " open since cycle " + std::to_string(bk.act) + ", longer than " +
                                    detail::g(p_.tRAS_max) + " ns");
            }
        }
        cycle_++;
        return drives;
    }

    bool failed() const { return failed_; }
    const std::string &error() const { return error_; }            // "" until failed()
    const std::string &error_command() const { return error_command_; }
    const std::string &error_parameter() const { return error_parameter_; }
    int64_t error_cycle() const { return error_cycle_; }
    uint64_t cycle() const { return static_cast<uint64_t>(cycle_); }  // edges taken (the next clock() is this edge)
    bool ready() const { return ready_; }                            // LOAD MODE REGISTER done
    int cas_latency() const { return cl_; }                          // -1 before LOAD MODE REGISTER
    int64_t refreshes() const { return refreshes_; }                 // AUTO REFRESH since initialisation
    int64_t init_refreshes() const { return init_refs_; }            // AUTO REFRESH before it
    int64_t commands(int code) const { return commands_[code & 7]; } // commands taken, by code
    const SdramParams &params() const { return p_; }

    uint16_t peek(int bank, int row, int col) const {
        if (!in_range(bank, row, col)) return 0;
        const auto &r = store_[static_cast<size_t>(bank) * p_.rows + row];
        return r ? r[col] : 0;
    }
    void poke(int bank, int row, int col, uint16_t value) {
        if (in_range(bank, row, col)) row_of(bank, row)[col] = value;
    }
    // Words that are not 0 (the storage's content, for comparing with the Python model's).
    size_t nonzero_words() const {
        size_t n = 0;
        for (const auto &r : store_)
            if (r)
                for (int c = 0; c < p_.columns; c++) n += r[c] != 0;
        return n;
    }

private:
    static constexpr int64_t kNever = -(int64_t(1) << 40);
    static constexpr int64_t kUnreachable = int64_t(1) << 62;
    struct Bank {
        int row = -1;  // -1: idle
        int64_t act = kNever, pre = kNever, write = kNever;
    };
    struct Read {
        int64_t edge = -1;  // the edge the controller samples the word at
        int bank = 0, row = 0, col = 0;
    };

    static int decode(int ras_n, int cas_n, int we_n) { return (ras_n & 1) << 2 | (cas_n & 1) << 1 | (we_n & 1); }
    static const char *command_name(int code) {
        static const char *const names[8] = {"LOAD MODE REGISTER", "AUTO REFRESH", "PRECHARGE", "ACTIVATE",
                                             "WRITE", "READ", "BURST TERMINATE", "NOP"};
        return names[code & 7];
    }

    bool in_range(int bank, int row, int col) const {
        return bank >= 0 && bank < p_.banks && row >= 0 && row < p_.rows && col >= 0 && col < p_.columns;
    }
    uint16_t *row_of(int bank, int row) {
        auto &r = store_[static_cast<size_t>(bank) * p_.rows + row];
        if (!r) r.reset(new uint16_t[p_.columns]());
        return r.get();
    }

    void fail_at(int64_t cycle, const std::string &command, const char *parameter, const std::string &detail) {
        failed_ = true;
        error_cycle_ = cycle;
        error_command_ = command;
        error_parameter_ = parameter;
        error_ = "SDRAM model, cycle " + std::to_string(cycle) + ": " + command + ": " + parameter +
                 " violated: " + detail;
    }
    ONDA_SDRAM_COLD bool fail(const std::string &command, const char *parameter, const std::string &detail) {
        fail_at(cycle_, command, parameter, detail);
        return false;
    }

    // SdramCore._since: false (and failed) if less than ns have passed since cycle `then`.
    // (`after` names the command timed from, followed by bank `after_bank` unless it is < 0; the
    // messages are only built on a failure, so that a command costs no allocation.)
    bool since(const char *parameter, int64_t then, double ns, const char *after, int after_bank = -1) {
        const double elapsed = static_cast<double>(cycle_ - then) * tck_;
        if (elapsed < ns - 1e-6) return since_failed(parameter, then, elapsed, ns, after, after_bank);
        return true;
    }
    ONDA_SDRAM_COLD bool since_failed(const char *parameter, int64_t then, double elapsed, double ns, const char *after,
                                      int after_bank) {
        return fail(what(), parameter,
                    detail::g(elapsed) + " ns after the " + after +
                        (after_bank >= 0 ? std::to_string(after_bank) : std::string()) + " at cycle " +
                        std::to_string(then) + ", needs " + detail::g(ns) + " ns");
    }

    // The command being taken as SdramCore names it.
    std::string what() const {
        std::string w = command_name(cur_code_);
        if (cur_to_bank_) w += " to bank " + std::to_string(cur_bank_);
        return w;
    }

    bool common() {
        if (static_cast<double>(cycle_) * tck_ < p_.power_up - 1e-6)
            return fail(what(), "power-up", detail::g(static_cast<double>(cycle_) * tck_) + " ns after power-up, needs " +
                                              detail::g(p_.power_up) + " ns of NOP/INHIBIT first");
        return since("tMRD", last_lmr_, static_cast<double>(p_.tMRD_ck) * tck_, "LOAD MODE REGISTER") &&
               since("tRFC", last_ref_, p_.tRFC, "AUTO REFRESH");
    }

    bool all_idle() {
        for (int b = 0; b < p_.banks; b++) {
            const Bank &bk = banks_[b];
            if (bk.row >= 0)
                return fail(what(), "open bank",
                            "bank " + std::to_string(b) + " has row " + std::to_string(bk.row) + " open");
            if (!since("tRP", bk.pre, p_.tRP, "PRECHARGE of bank ", b)) return false;
        }
        return true;
    }

    bool refresh_debt_ok() {
        const double t = static_cast<double>(cycle_ - ready_cycle_) * tck_;
        const int64_t owed = static_cast<int64_t>(detail::py_floordiv(t, p_.tREFI));
        if (owed - refreshes_ > 8)
            return fail("(any)", "tREFI", std::to_string(refreshes_) + " AUTO REFRESH since initialisation at cycle " +
                                              std::to_string(ready_cycle_) + ", " + std::to_string(owed) +
                                              " due: more than 8 postponed");
        return true;
    }

    void update_ras_deadline() {
        int64_t d = INT64_MAX;
        for (int b = 0; b < p_.banks; b++)
            if (banks_[b].row >= 0 && banks_[b].act + ras_max_cycles_ < d) d = banks_[b].act + ras_max_cycles_;
        // (act + kUnreachable does not overflow: act < 2^62 in any run)
        ras_deadline_ = d;
    }

    bool command(int code, int ba, int a, int dqm, int dq, int dq_oe) {
        commands_[code]++;
        const int b = ba & bank_mask_;
        const bool a10 = (a >> 10) & 1;
        cur_code_ = code;
        cur_bank_ = b;
        cur_to_bank_ = code == ACT || code == READ || code == WRITE || (code == PRE && !a10);
        if (!common()) return false;
        if (code == BST) return fail(what(), "unsupported", "BURST TERMINATE (bursts are 1 word)");
        if (power_up_phase_ && code != PRE)
            return fail(what(), "initialisation", "the first command after power-up must be PRECHARGE ALL");
        if ((code == ACT || code == READ || code == WRITE) && !ready_)
            return fail(what(), "initialisation", "the mode register is not loaded yet");
        Bank &bank = banks_[b];
        switch (code) {
        case ACT: {
            const int row = a & 0x1FFF;
            if (bank.row >= 0) return fail(what(), "open bank", "row " + std::to_string(bank.row) + " is open");
            if (row >= p_.rows)
                return fail(what(), "row", "row " + std::to_string(row) + " of " + std::to_string(p_.rows));
            if (!since("tRP", bank.pre, p_.tRP, "PRECHARGE")) return false;
            if (!since("tRC", bank.act, p_.tRC, "ACTIVATE")) return false;
            if (last_act_bank_ >= 0 && last_act_bank_ != b &&
                !since("tRRD", last_act_, p_.tRRD, "ACTIVATE of bank ", last_act_bank_))
                return false;
            bank.row = row;
            bank.act = cycle_;
            last_act_ = cycle_;
            last_act_bank_ = b;
            update_ras_deadline();
            break;
        }
        case READ:
        case WRITE: {
            const int col = a & 0x3FF;
            if (a10) return fail(what(), "unsupported", "auto precharge (A10 high)");
            if (bank.row < 0) return fail(what(), "closed bank", "no row is open");
            if (col >= p_.columns)
                return fail(what(), "column", "column " + std::to_string(col) + " of " + std::to_string(p_.columns));
            if (!since("tRCD", bank.act, p_.tRCD, "ACTIVATE")) return false;
            if (code == READ) {
                const int64_t edge = cycle_ + cl_;
                reads_[edge & 7] = Read{edge, b, bank.row, col};
                drive_[edge & 15] = edge;
            } else {
                const int keep = ((dqm & 1) ? 0xFF : 0) | ((dqm & 2) ? 0xFF00 : 0);
                if (keep != 0xFFFF && !dq_oe)
                    return fail(what(), "write data", "dq is not driven for the unmasked bytes");
                uint16_t *w = row_of(b, bank.row) + col;
                *w = static_cast<uint16_t>((*w & keep) | (dq & ~keep & 0xFFFF));
                bank.write = cycle_;
            }
            break;
        }
        case PRE: {
            for (int t = a10 ? 0 : b; t < (a10 ? p_.banks : b + 1); t++) {
                Bank &tb = banks_[t];
                if (tb.row >= 0) {
                    if (!since("tRAS", tb.act, p_.tRAS, "ACTIVATE of bank ", t)) return false;
                    if (!since("tWR", tb.write, p_.tWR, "WRITE to bank ", t)) return false;
                }
                tb.row = -1;
                tb.pre = cycle_;
            }
            update_ras_deadline();
            if (power_up_phase_) {
                if (!a10) return fail(what(), "initialisation", "the first command after power-up must be PRECHARGE ALL");
                power_up_phase_ = false;
            }
            break;
        }
        case REF: {
            if (!all_idle()) return false;
            int64_t last = kNever;
            for (int t = 0; t < p_.banks; t++)
                if (banks_[t].act > last) last = banks_[t].act;
            if (!since("tRC", last, p_.tRC, "last ACTIVATE")) return false;
            last_ref_ = cycle_;
            if (ready_)
                refreshes_++;
            else
                init_refs_++;
            break;
        }
        case LMR: {
            if (!all_idle()) return false;
            if (init_refs_ < p_.init_refreshes && !ready_)
                return fail(what(), "initialisation",
                            std::to_string(init_refs_) + " AUTO REFRESH before it, the datasheet asks " +
                                std::to_string(p_.init_refreshes));
            const int bl = a & 7, cl = (a >> 4) & 7;
            if (bl != 0 || ((a >> 7) & 3)) {
                char buf[32];
                std::snprintf(buf, sizeof buf, "0x%x", static_cast<unsigned>(a));
                return fail(what(), "unsupported",
                            std::string("mode ") + buf + ": only burst length 1, standard operation");
            }
            if (p_.cl_tck_min[cl] < 0 || tck_ < p_.cl_tck_min[cl] - 1e-9) {
                std::string allows;
                for (int c = 0; c < kClSlots; c++)
                    if (p_.cl_tck_min[c] >= 0)
                        allows += (allows.empty() ? "CL" : ", CL") + std::to_string(c) + " from " +
                                  detail::g(p_.cl_tck_min[c]) + " ns";
                return fail(what(), "CAS latency", "CL " + std::to_string(cl) + " at " + detail::g(p_.clock_mhz) +
                                                     " MHz; " + p_.name + " allows " + allows);
            }
            cl_ = cl;
            last_lmr_ = cycle_;
            if (!ready_) {
                ready_ = true;
                ready_cycle_ = cycle_;
            }
            break;
        }
        }
        return true;
    }

    SdramParams p_;
    double tck_;
    int bank_mask_;
    int64_t cycle_ = 0;
    Bank banks_[kMaxBanks];
    std::vector<std::unique_ptr<uint16_t[]>> store_;  // per (bank, row), allocated on first write
    int64_t commands_[8] = {};
    bool power_up_phase_ = true;  // SdramCore.phase == "power-up"
    bool ready_ = false;
    int cl_ = -1;
    int64_t init_refs_ = 0, refreshes_ = 0, ready_cycle_ = 0;
    int64_t last_ref_ = kNever, last_lmr_ = kNever, last_act_ = kNever;
    int last_act_bank_ = -1;
    int cur_code_ = NOP, cur_bank_ = 0;  // the command being taken, for what()
    bool cur_to_bank_ = false;
    Read reads_[8];                                                   // by sample edge & 7 (CL <= 7)
    int64_t drive_[16] = {-9, -9, -9, -9, -9, -9, -9, -9, -9, -9, -9, -9, -9, -9, -9, -9};  // sample edges & 15
    int dqm_prev_ = 0;
    int64_t ras_max_cycles_ = 0;      // elapsed cycles at which an open row breaks tRAS_max
    int64_t ras_deadline_ = INT64_MAX;  // the earliest edge any open row breaks tRAS_max
    bool failed_ = false;
    int64_t error_cycle_ = -1;
    std::string error_, error_command_, error_parameter_;
};

}  // namespace onda_sdram
