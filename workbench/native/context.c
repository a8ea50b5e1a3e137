/* The context detector's memory (CAD-OSE) in C: the same steps, in the same order, as
 * ContextMemory.step and ContextDetector._advance/_rebuild in workbench/models/context.py,
 * which stays the reference. Every order that decides a result is Python's:
 *   - semi-contexts, contexts, links and zero-level links are numbered and iterated in
 *     insertion order (Python dicts);
 *   - active contexts sort by (activations, hash(left), hash(right), id) with CPython's
 *     tuple hash (xxHash lanes, Objects/tupleobject.c) of the facts, signed;
 *   - scores are the same double operations: matched/selected, added/unique,
 *     (1 - matched + novel) / 2, and the bin is min(max(int(q), 0), bins), int() truncating.
 * Facts are int64: sensor facts 65536 + 2*bit + (0|1) (at most 8 bits: 16 of them),
 * neuron facts 2**31 + context id.
 *
 * State serialises to little-endian int64 words (doubles as their bit patterns), the
 * layout workbench/models/context_state.py reads and writes for the Python memory:
 *   magic, bits, max_left, max_active, max_contexts, bin_low, step, predicted mask,
 *   n_left, n_right, n_contexts,
 *   per left semi-context: length, facts; per right semi-context: length, facts;
 *   per context: selected, matched, active, right id, zero level, hash(left), hash(right);
 *   per left semi-context: n links, (right id, context id)...; n zero links, (right id, context id)...;
 *   new context (-1: none), n left group, facts..., n left full, ids..., left known.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENSOR 65536LL
#define NEURON 2147483648LL
#define NSENSOR 16
#define MAGIC 0x3156444143425757LL /* "WWBCADV1" */

#define XXPRIME_1 11400714785074694791ULL
#define XXPRIME_2 14029467366897019727ULL
#define XXPRIME_5 2870177450012600261ULL

static void *grow_to(void *p, int64_t *cap, int64_t need, size_t size) {
    int64_t c = *cap ? *cap : 4;
    while (c < need) c *= 2;
    void *q = realloc(p, (size_t)c * size);
    if (!q) {
        fputs("workbench context kernel: out of memory\n", stderr);
        abort();
    }
    if (c > *cap) memset((char *)q + (size_t)*cap * size, 0, (size_t)(c - *cap) * size);
    *cap = c;
    return q;
}

/* p, with room for need elements (zeroed when new); the check inline, the growth out of line */
static inline void *grow(void *p, int64_t *cap, int64_t need, size_t size) {
    return need <= *cap ? p : grow_to(p, cap, need, size);
}

typedef struct { int32_t *a; int64_t n, cap; } ivec;
typedef struct { int32_t rid, cid; } link_t;
typedef struct { link_t *a; int64_t n, cap; } lvec;

static void ipush(ivec *v, int32_t x) {
    v->a = grow(v->a, &v->cap, v->n + 1, sizeof *v->a);
    v->a[v->n++] = x;
}

static void lpush(lvec *v, int32_t rid, int32_t cid) {
    v->a = grow(v->a, &v->cap, v->n + 1, sizeof *v->a);
    v->a[v->n].rid = rid;
    v->a[v->n].cid = cid;
    v->n++;
}

static int64_t tuple_hash(const int64_t *f, int64_t n) {
    uint64_t acc = XXPRIME_5;
    for (int64_t i = 0; i < n; i++) {
        uint64_t lane = (uint64_t)f[i]; /* hash(i) == i for 0 <= i < 2**61 - 1, as facts are */
        acc += lane * XXPRIME_2;
        acc = (acc << 31) | (acc >> 33);
        acc *= XXPRIME_1;
    }
    acc += (uint64_t)n ^ (XXPRIME_5 ^ 3527539ULL);
    if (acc == (uint64_t)-1) return 1546275796;
    return (int64_t)acc;
}

static inline int64_t bit_count(uint32_t x) { /* of 16 bits, without a popcount instruction's call */
    x = x - ((x >> 1) & 0x5555u);
    x = (x & 0x3333u) + ((x >> 2) & 0x3333u);
    x = (x + (x >> 4)) & 0x0F0Fu;
    return (x + (x >> 8)) & 0x1Fu;
}

static int64_t slot_of(int64_t f) { return f < NEURON ? f - SENSOR : NSENSOR + (f - NEURON); }

typedef struct {
    int64_t *pool; int64_t npool, cappool;        /* every semi-context's facts, back to back */
    int64_t *off, *hash; int32_t *len; int64_t n; /* per semi-context */
    int64_t capoff, caphash, caplen;
    int32_t *table; int64_t tcap;                 /* open addressing: id + 1, 0 empty */
    ivec *idx; int64_t capidx;                    /* fact slot -> semi-contexts having it */
} side_t;

typedef struct { int64_t a, b; ivec lids; int used; } end_t;

typedef struct { int64_t act, hl, hr; int32_t cid; } active_t;

/* A context: [selected, matched, active, right facts, zero level, hash(left), hash(right)] in Python. */
typedef struct {
    int64_t sel, mat, act, hl, hr;
    int32_t rid;
    uint16_t rbits; /* the right facts as bits */
    uint8_t zflag;
} ctx_t;
typedef struct { int64_t loff, llen, lid; uint32_t rbits; } pot_t; /* lid -1: left facts not yet stored */

typedef struct {
    int32_t max_left;
    side_t s[2];
    lvec *links, *zero; int64_t caplinks, capzero;  /* per left semi-context, insertion order */
    ivec *zidx; int64_t capzidx;                    /* fact slot -> left semi-contexts with zero-level links */
    uint32_t *rmask; int64_t caprmask;             /* per right semi-context: its facts as bits */
    end_t *ends; int64_t ecap, en;                  /* (first, last fact) -> left semi-contexts */
    uint64_t *ebits;                                /* 8 * ecap bits: which (first, last) may be in ends */
    ctx_t *ctx; int64_t nctx, capctx;              /* contexts, each in one place (one cache line) */
    int64_t new_context;                            /* -1: none */
    uint32_t *mark; int64_t capmark; uint32_t epoch, gsens; /* the left group's facts: see mark_group */
    int64_t *group; int64_t ngroup, capgroup;
    int32_t *full; int64_t nfull, capfull;
    int64_t known;
    /* scratch, kept between steps */
    int32_t *lc; int64_t caplc;
    ivec touched, crossed_lid, crossed_n;
    active_t *active; int64_t capactive;
    int64_t *ppool; int64_t nppool, capppool;
    pot_t *pot; int64_t npot, cappot;
    uint64_t *pkey; uint32_t *pstamp; int64_t pcap, pn; uint32_t pepoch; /* the step's (left, right) pairs */
    link_t *hits; int64_t caphits;
} mem_t;

static mem_t *mem_new(int32_t max_left) {
    mem_t *m = calloc(1, sizeof *m);
    if (!m) {
        fputs("workbench context kernel: out of memory\n", stderr);
        abort();
    }
    m->max_left = max_left;
    m->new_context = -1;
    return m;
}

static void mem_free(mem_t *m) {
    if (!m) return;
    for (int k = 0; k < 2; k++) {
        side_t *s = &m->s[k];
        free(s->pool); free(s->off); free(s->hash); free(s->len); free(s->table);
        for (int64_t i = 0; i < s->capidx; i++) free(s->idx[i].a);
        free(s->idx);
    }
    for (int64_t i = 0; i < m->s[0].n; i++) { free(m->links[i].a); free(m->zero[i].a); }
    for (int64_t i = 0; i < m->capzidx; i++) free(m->zidx[i].a);
    free(m->links); free(m->zero); free(m->zidx); free(m->rmask);
    for (int64_t i = 0; i < m->ecap; i++) free(m->ends[i].lids.a);
    free(m->ends); free(m->ebits);
    free(m->ctx);
    free(m->group); free(m->full); free(m->mark); free(m->lc);
    free(m->touched.a); free(m->crossed_lid.a); free(m->crossed_n.a);
    free(m->active); free(m->ppool); free(m->pot); free(m->pkey); free(m->pstamp); free(m->hits);
    free(m);
}

static uint64_t ends_slot(int64_t a, int64_t b) {
    uint64_t h = (uint64_t)a * XXPRIME_1 ^ (uint64_t)b * XXPRIME_2;
    return h ^ (h >> 29);
}

static void ends_rehash(mem_t *m) {
    int64_t ncap = m->ecap ? m->ecap * 2 : 64;
    end_t *old = m->ends;
    int64_t ocap = m->ecap;
    m->ends = calloc((size_t)ncap, sizeof *m->ends);
    free(m->ebits);
    m->ebits = calloc((size_t)ncap / 8, sizeof *m->ebits); /* 8 bits per slot, 64 per word */
    if (!m->ends || !m->ebits) { fputs("workbench context kernel: out of memory\n", stderr); abort(); }
    m->ecap = ncap;
    for (int64_t i = 0; i < ocap; i++) {
        if (!old[i].used) continue;
        uint64_t h = ends_slot(old[i].a, old[i].b), j = h & (uint64_t)(ncap - 1);
        while (m->ends[j].used) j = (j + 1) & (uint64_t)(ncap - 1);
        m->ends[j] = old[i];
        uint64_t bit = (h >> 40) & (uint64_t)(8 * ncap - 1);
        m->ebits[bit >> 6] |= 1ULL << (bit & 63);
    }
    free(old);
}

/* The left semi-contexts whose facts run from a to b; NULL when there are none (and create is 0). */
static end_t *ends_find(mem_t *m, int64_t a, int64_t b, int create) {
    if (create && (m->en + 1) * 2 > m->ecap) ends_rehash(m);
    if (!m->ecap) return NULL;
    uint64_t h = ends_slot(a, b), mask = (uint64_t)(m->ecap - 1), j = h & mask;
    uint64_t bit = (h >> 40) & (uint64_t)(8 * m->ecap - 1);
    if (!create && !(m->ebits[bit >> 6] >> (bit & 63) & 1)) return NULL; /* a small filter stays in cache */
    while (m->ends[j].used) {
        if (m->ends[j].a == a && m->ends[j].b == b) return &m->ends[j];
        j = (j + 1) & mask;
    }
    if (!create) return NULL;
    m->ends[j].used = 1;
    m->ends[j].a = a;
    m->ends[j].b = b;
    m->ebits[bit >> 6] |= 1ULL << (bit & 63);
    m->en++;
    return &m->ends[j];
}

static void side_rehash(side_t *s) {
    int64_t ncap = s->tcap ? s->tcap * 2 : 64;
    free(s->table);
    s->table = calloc((size_t)ncap, sizeof *s->table);
    if (!s->table) { fputs("workbench context kernel: out of memory\n", stderr); abort(); }
    s->tcap = ncap;
    for (int64_t sid = 0; sid < s->n; sid++) {
        uint64_t j = (uint64_t)s->hash[sid] & (uint64_t)(ncap - 1);
        while (s->table[j]) j = (j + 1) & (uint64_t)(ncap - 1);
        s->table[j] = (int32_t)sid + 1;
    }
}

/* The table slot of the semi-context with these facts (hash h), or of the empty slot it would take. */
static uint64_t semi_slot(const side_t *s, const int64_t *f, int64_t n, int64_t h) {
    uint64_t mask = (uint64_t)(s->tcap - 1), j = (uint64_t)h & mask;
    while (s->table[j]) {
        int32_t sid = s->table[j] - 1;
        if (s->hash[sid] == h && s->len[sid] == n && !memcmp(s->pool + s->off[sid], f, (size_t)n * sizeof *f))
            return j;
        j = (j + 1) & mask;
    }
    return j;
}

/* The id of the semi-context with these facts (sorted); -1 when there is none. */
static int32_t semi_find(const mem_t *m, int side, const int64_t *f, int64_t n) {
    const side_t *s = &m->s[side];
    return s->tcap ? s->table[semi_slot(s, f, n, tuple_hash(f, n))] - 1 : -1;
}

/* The id of the semi-context with these facts (sorted), created when new. */
static int32_t semi(mem_t *m, int side, const int64_t *f, int64_t n) {
    side_t *s = &m->s[side];
    int64_t h = tuple_hash(f, n);
    if ((s->n + 1) * 2 > s->tcap) side_rehash(s);
    uint64_t j = semi_slot(s, f, n, h);
    if (s->table[j]) return s->table[j] - 1;
    int32_t sid = (int32_t)s->n;
    s->table[j] = sid + 1;
    s->off = grow(s->off, &s->capoff, s->n + 1, sizeof *s->off);
    s->hash = grow(s->hash, &s->caphash, s->n + 1, sizeof *s->hash);
    s->len = grow(s->len, &s->caplen, s->n + 1, sizeof *s->len);
    s->pool = grow(s->pool, &s->cappool, s->npool + n, sizeof *s->pool);
    s->off[sid] = s->npool;
    s->hash[sid] = h;
    s->len[sid] = (int32_t)n;
    memcpy(s->pool + s->npool, f, (size_t)n * sizeof *f);
    s->npool += n;
    s->n++;
    for (int64_t i = 0; i < n; i++) {
        int64_t slot = slot_of(f[i]);
        s->idx = grow(s->idx, &s->capidx, slot + 1, sizeof *s->idx);
        ipush(&s->idx[slot], sid);
    }
    if (side == 0) {
        m->links = grow(m->links, &m->caplinks, s->n, sizeof *m->links);
        m->zero = grow(m->zero, &m->capzero, s->n, sizeof *m->zero);
        if (n) ipush(&ends_find(m, f[0], f[n - 1], 1)->lids, sid);
    } else {
        m->rmask = grow(m->rmask, &m->caprmask, s->n, sizeof *m->rmask);
        uint32_t bits = 0;
        for (int64_t i = 0; i < n; i++) bits |= 1u << (f[i] - SENSOR);
        m->rmask[sid] = bits;
    }
    return sid;
}

static int32_t find_link(const lvec *v, int32_t rid) {
    for (int64_t i = 0; i < v->n; i++)
        if (v->a[i].rid == rid) return v->a[i].cid;
    return -1;
}

/* zero[lid][rid] = cid (a new key: Python's dict keeps a known one in its place) */
static void zero_push(mem_t *m, int32_t lid, int32_t rid, int32_t cid) {
    if (!m->zero[lid].n) {
        const side_t *L = &m->s[0];
        for (int64_t i = 0; i < L->len[lid]; i++) {
            int64_t slot = slot_of(L->pool[L->off[lid] + i]);
            m->zidx = grow(m->zidx, &m->capzidx, slot + 1, sizeof *m->zidx);
            ipush(&m->zidx[slot], lid);
        }
    }
    lpush(&m->zero[lid], rid, cid);
}

static int32_t new_context(mem_t *m, int32_t lid, int32_t rid, int zero) {
    int64_t c = m->nctx, need = c + 1;
    m->ctx = grow(m->ctx, &m->capctx, need, sizeof *m->ctx);
    ctx_t *x = &m->ctx[c];
    x->sel = x->mat = x->act = 0;
    x->hl = m->s[0].hash[lid];
    x->hr = m->s[1].hash[rid];
    x->rid = rid;
    x->rbits = (uint16_t)m->rmask[rid];
    x->zflag = (uint8_t)zero;
    m->nctx = need;
    lpush(&m->links[lid], rid, (int32_t)c);
    return (int32_t)c;
}

static int cmp_active(const void *x, const void *y) {
    const active_t *a = x, *b = y;
    if (a->act != b->act) return a->act < b->act ? -1 : 1;
    if (a->hl != b->hl) return a->hl < b->hl ? -1 : 1;
    if (a->hr != b->hr) return a->hr < b->hr ? -1 : 1;
    return (a->cid > b->cid) - (a->cid < b->cid);
}

/* Marks the left group's facts, for in_group: sensor facts as bits, neurons by a stamp per context. */
static void mark_group(mem_t *m) {
    if (++m->epoch == 0) {
        memset(m->mark, 0, (size_t)m->capmark * sizeof *m->mark);
        m->epoch = 1;
    }
    m->gsens = 0;
    for (int64_t i = 0; i < m->ngroup; i++) {
        int64_t f = m->group[i];
        if (f < NEURON) {
            m->gsens |= 1u << (f - SENSOR);
        } else {
            m->mark = grow(m->mark, &m->capmark, f - NEURON + 1, sizeof *m->mark);
            m->mark[f - NEURON] = m->epoch;
        }
    }
}

static int in_group(const mem_t *m, int64_t f) {
    if (f < NEURON) return (m->gsens >> (f - SENSOR)) & 1;
    return f - NEURON < m->capmark && m->mark[f - NEURON] == m->epoch;
}

/* Sorts in place without allocating (glibc's qsort mallocs a buffer): shell sort, whose last pass (gap 1)
 * is an insertion sort; equal keys here are equal values, so stability does not matter. */
#define SORT(arr, n, type, less)                                                          \
    do {                                                                                  \
        static const int64_t gaps_[] = {1750, 701, 301, 132, 57, 23, 10, 4, 1};            \
        int g0_ = 8;                                                                      \
        while (g0_ > 0 && gaps_[g0_ - 1] < (n)) g0_--;                                    \
        for (int g_ = g0_; g_ < 9 && (n) > 1; g_++) {                                     \
            int64_t gap_ = gaps_[g_];                                                     \
            for (int64_t i_ = gap_; i_ < (n); i_++) {                                     \
                type x_ = (arr)[i_];                                                      \
                int64_t j_ = i_;                                                          \
                for (; j_ >= gap_ && less(x_, (arr)[j_ - gap_]); j_ -= gap_) (arr)[j_] = (arr)[j_ - gap_]; \
                (arr)[j_] = x_;                                                           \
            }                                                                             \
        }                                                                                 \
    } while (0)
#define LESS(a, b) ((a) < (b))
#define LESS_CID(a, b) ((a).cid < (b).cid)
#define LESS_ACTIVE(a, b) (cmp_active(&(a), &(b)) < 0)

/* Python's `unique`, the step's distinct (left, right) pairs, as (left id, right facts as bits): a set whose
 * clearing is a new stamp. Returns 1 when key is new. */
static int pair_add(mem_t *m, int64_t lid, uint32_t rbits) {
    uint64_t key = (uint64_t)lid << 16 | rbits;
    if ((m->pn + 1) * 2 > m->pcap) { /* grow, keeping this step's keys */
        int64_t ocap = m->pcap, ncap = ocap ? ocap * 4 : 256;
        uint64_t *okey = m->pkey;
        uint32_t *ostamp = m->pstamp;
        m->pkey = calloc((size_t)ncap, sizeof *m->pkey);
        m->pstamp = calloc((size_t)ncap, sizeof *m->pstamp);
        if (!m->pkey || !m->pstamp) { fputs("workbench context kernel: out of memory\n", stderr); abort(); }
        m->pcap = ncap;
        for (int64_t i = 0; i < ocap; i++) {
            if (ostamp[i] != m->pepoch) continue;
            uint64_t j = (okey[i] * XXPRIME_1 >> 20) & (uint64_t)(ncap - 1);
            while (m->pstamp[j] == m->pepoch) j = (j + 1) & (uint64_t)(ncap - 1);
            m->pkey[j] = okey[i];
            m->pstamp[j] = m->pepoch;
        }
        free(okey);
        free(ostamp);
    }
    uint64_t mask = (uint64_t)(m->pcap - 1), j = (key * XXPRIME_1 >> 20) & mask;
    while (m->pstamp[j] == m->pepoch) {
        if (m->pkey[j] == key) return 0;
        j = (j + 1) & mask;
    }
    m->pkey[j] = key;
    m->pstamp[j] = m->pepoch;
    m->pn++;
    return 1;
}

static void pairs_clear(mem_t *m) {
    m->pn = 0;
    if (++m->pepoch == 0) {
        memset(m->pstamp, 0, (size_t)m->pcap * sizeof *m->pstamp);
        m->pepoch = 1;
    }
}

/* A potential context: left facts (those of a known left semi-context lid, or new ones at loff), and the right
 * facts (of the step's facts) as bits. One already among the step's pairs would add nothing: it is dropped. */
static void push_potential(mem_t *m, int64_t lid, int64_t loff, int64_t llen, uint32_t rbits) {
    if (lid >= 0 && !pair_add(m, lid, rbits)) return;
    m->pot = grow(m->pot, &m->cappot, m->npot + 1, sizeof *m->pot);
    pot_t *p = &m->pot[m->npot++];
    p->lid = lid;
    p->loff = loff;
    p->llen = llen;
    p->rbits = rbits;
}

/* ContextMemory.step: learn the step to facts (sorted sensor facts, as bits in fmask). */
static void mem_step(mem_t *m, const int64_t *facts, int64_t nf, uint32_t fmask, int64_t max_active, int predict,
                     uint32_t *predicted, double *matched, double *novel) {
    pairs_clear(m);
    mark_group(m); /* the last left group, for the filters of partial matches */
    int new_flag = 0;
    int32_t skip = 0;
    if (m->ngroup && nf) {
        int32_t lid = semi(m, 0, m->group, m->ngroup);
        int32_t rid = semi(m, 1, facts, nf);
        pair_add(m, lid, fmask);
        int32_t cid = find_link(&m->links[lid], rid);
        if (cid < 0) {
            cid = new_context(m, lid, rid, 1);
            zero_push(m, lid, rid, cid);
            m->new_context = cid;
            new_flag = 1;
        } else {
            m->ctx[cid].zflag = 1;
            if (find_link(&m->zero[lid], rid) < 0) zero_push(m, lid, rid, cid);
        }
    }
    /* the right side: how many of the facts a right semi-context has is popcount(its bits & fmask) */
    const side_t *L = &m->s[0];
    if (m->new_context >= 0) skip = (int32_t)m->new_context; /* CAD-OSE never activates context 0 */
    m->crossed_lid.n = m->crossed_n.n = 0;
    if (new_flag) {
        /* Partial matches of the last left group matter too: Python counts the group's facts in every left
         * semi-context and walks them in id order. Those it holds whole are the last step's left_full (same
         * group, same known ones); of the others only those with zero-level contexts and at most max_left
         * of the facts can do anything, so only those are counted (zidx) and merged in. */
        m->lc = grow(m->lc, &m->caplc, L->n, sizeof *m->lc);
        m->touched.n = 0;
        for (int64_t i = 0; i < m->ngroup; i++) {
            int64_t slot = slot_of(m->group[i]);
            if (slot >= m->capzidx) continue;
            const ivec *v = &m->zidx[slot];
            for (int64_t k = 0; k < v->n; k++) {
                int32_t lid = v->a[k];
                if (!m->lc[lid]++) ipush(&m->touched, lid);
            }
        }
        int64_t np = 0, scan = m->touched.n * 4 > L->n; /* many: in id order by a scan, not a sort */
        int64_t todo = scan ? L->n : m->touched.n;
        if (!scan) SORT(m->touched.a, m->touched.n, int32_t, LESS);
        m->hits = grow(m->hits, &m->caphits, m->touched.n, sizeof *m->hits);
        for (int64_t k = 0; k < todo; k++) {
            int32_t lid = scan ? (int32_t)k : m->touched.a[k];
            int32_t count = m->lc[lid];
            if (!count) continue;
            m->lc[lid] = 0;
            if (lid < m->known && count < L->len[lid] && count <= m->max_left) {
                m->hits[np].rid = count; /* scratch: (count, lid), in id order */
                m->hits[np].cid = lid;
                np++;
            }
        }
        int64_t i = 0, j = 0;
        while (i < m->nfull || j < np) {
            if (j == np || (i < m->nfull && m->full[i] < m->hits[j].cid)) {
                ipush(&m->crossed_lid, m->full[i]);
                ipush(&m->crossed_n, L->len[m->full[i]]);
                i++;
            } else {
                ipush(&m->crossed_lid, m->hits[j].cid);
                ipush(&m->crossed_n, m->hits[j].rid);
                j++;
            }
        }
    } else {
        for (int64_t k = 0; k < m->nfull; k++) {
            ipush(&m->crossed_lid, m->full[k]);
            ipush(&m->crossed_n, L->len[m->full[k]]);
        }
    }
    int64_t selected = 0, nactive = 0;
    m->nppool = m->npot = 0;
    for (int64_t k = 0; k < m->crossed_lid.n; k++) {
        int32_t lid = m->crossed_lid.a[k];
        int64_t count = m->crossed_n.a[k];
        if (count == L->len[lid]) { /* the whole left side held: its contexts were selected */
            const lvec *links = &m->links[lid];
            for (int64_t i = 0; i < links->n; i++) {
                int32_t rid = links->a[i].rid, cid = links->a[i].cid;
                if (cid == skip) continue;
                ctx_t *x = &m->ctx[cid];
                int64_t rcount = bit_count(x->rbits & fmask), rsize = bit_count(x->rbits);
                selected++;
                x->sel += rsize;
                if (rcount) {
                    x->mat += rcount;
                    if (rcount == rsize) {
                        x->act++;
                        m->active = grow(m->active, &m->capactive, nactive + 1, sizeof *m->active);
                        active_t *a = &m->active[nactive++];
                        a->act = x->act;
                        a->hl = x->hl;
                        a->hr = x->hr;
                        a->cid = cid;
                    } else if (x->zflag && new_flag && count <= m->max_left) {
                        push_potential(m, lid, 0, 0, m->rmask[rid] & fmask);
                    }
                }
            }
        } else if (count <= m->max_left && m->zero[lid].n) { /* part of it held: zero-level contexts */
            const lvec *zero = &m->zero[lid];
            m->hits = grow(m->hits, &m->caphits, zero->n, sizeof *m->hits);
            int64_t nhits = 0;
            for (int64_t i = 0; i < zero->n; i++)
                if ((m->rmask[zero->a[i].rid] & fmask) && zero->a[i].cid != skip) m->hits[nhits++] = zero->a[i];
            if (nhits) {
                SORT(m->hits, nhits, link_t, LESS_CID); /* by (cid, rid): the cids differ */
                /* the left facts among the last left group: once for all the hits */
                m->ppool = grow(m->ppool, &m->capppool, m->nppool + L->len[lid], sizeof *m->ppool);
                int64_t loff = m->nppool;
                const int64_t *facts_of = L->pool + L->off[lid];
                for (int64_t i = 0; i < L->len[lid]; i++)
                    if (in_group(m, facts_of[i])) m->ppool[m->nppool++] = facts_of[i];
                int64_t llen = m->nppool - loff;
                int32_t known = semi_find(m, 0, m->ppool + loff, llen);
                for (int64_t i = 0; i < nhits; i++)
                    push_potential(m, known, loff, llen, m->rmask[m->hits[i].rid] & fmask);
            }
        }
    }
    m->new_context = -1;
    *matched = selected ? (double)nactive / (double)selected : 0.0;
    /* the new left group: the facts, then the neurons of the max_active greatest active contexts (in the
     * order of active.sort(), only which ones matters: they are taken in id order) */
    int64_t nn = nactive < max_active ? nactive : max_active;
    if (nactive > nn) {
        /* top: the nn greatest so far, ascending (insertion into a short sorted run) */
        active_t *top = m->active; /* reordered in place: entries [0, nn) hold the greatest */
        SORT(top, nn, active_t, LESS_ACTIVE);
        for (int64_t i = nn; i < nactive; i++) {
            if (cmp_active(&m->active[i], &top[0]) <= 0) continue;
            active_t x = m->active[i];
            int64_t j = 0;
            while (j + 1 < nn && cmp_active(&x, &top[j + 1]) > 0) {
                top[j] = top[j + 1];
                j++;
            }
            top[j] = x;
        }
    }
    m->group = grow(m->group, &m->capgroup, nf + nn, sizeof *m->group);
    m->ngroup = 0;
    for (int64_t i = 0; i < nf; i++) m->group[m->ngroup++] = facts[i];
    m->touched.n = 0;
    for (int64_t i = 0; i < nn; i++) ipush(&m->touched, m->active[i].cid);
    SORT(m->touched.a, nn, int32_t, LESS);
    for (int64_t i = 0; i < nn; i++) m->group[m->ngroup++] = NEURON + m->touched.a[i];
    /* store the new contexts */
    int64_t added = 0;
    for (int64_t k = 0; k < m->npot; k++) {
        const pot_t *p = &m->pot[k];
        int32_t lid = (int32_t)p->lid;
        if (lid < 0) { /* left facts new when pushed: stored now (or found, stored by a potential before) */
            lid = semi(m, 0, m->ppool + p->loff, p->llen);
            if (!pair_add(m, lid, p->rbits)) continue;
        }
        int64_t right[NSENSOR], nr = 0;
        for (int b = 0; b < NSENSOR; b++)
            if (p->rbits >> b & 1) right[nr++] = SENSOR + b;
        int32_t rid = semi(m, 1, right, nr);
        if (find_link(&m->links[lid], rid) < 0) {
            new_context(m, lid, rid, 0);
            added++;
        }
    }
    /* the left semi-contexts the new group holds whole */
    mark_group(m);
    m->nfull = 0;
    for (int64_t i = 0; i < m->ngroup; i++)
        for (int64_t j = i; j < m->ngroup; j++) {
            const end_t *e = ends_find(m, m->group[i], m->group[j], 0);
            if (!e) continue;
            for (int64_t k = 0; k < e->lids.n; k++) {
                int32_t lid = e->lids.a[k];
                const int64_t *lf = L->pool + L->off[lid];
                int32_t held = 0, len = L->len[lid];
                while (held < len && in_group(m, lf[held])) held++;
                if (held == len) { /* left_sets[lid] <= group */
                    m->full = grow(m->full, &m->capfull, m->nfull + 1, sizeof *m->full);
                    m->full[m->nfull++] = lid;
                }
            }
        }
    SORT(m->full, m->nfull, int32_t, LESS);
    m->known = L->n;
    added += new_flag;
    *novel = 0.0;
    if (new_flag && m->pn) {
        *novel = (double)added / (double)m->pn;
    }
    uint32_t bits = 0;
    if (predict) {
        double best = 0.0;
        for (int64_t k = 0; k < m->nfull; k++) {
            const lvec *links = &m->links[m->full[k]];
            for (int64_t i = 0; i < links->n; i++) {
                int32_t cid = links->a[i].cid;
                const ctx_t *x = &m->ctx[cid];
                double weight = x->sel > 0 ? (double)x->mat / (double)x->sel : 0.0;
                if (weight > best) {
                    best = weight;
                    bits = x->rbits;
                } else if (weight == best) {
                    bits |= x->rbits;
                }
            }
        }
    }
    *predicted = bits;
}

typedef struct {
    int32_t bits, bins, max_left;
    int64_t max_active, max_contexts;
    double bin_low, step;
    uint32_t predicted;
    mem_t *m;
} cad_t;

/* ContextDetector._advance: the value's facts, a step of the memory, the raw score. */
static double cad_advance(cad_t *c, double value, int predict) {
    double q = (value - c->bin_low) / c->step;
    int64_t b = !(q >= 1.0) ? 0 : q >= (double)c->bins ? c->bins : (int64_t)q;
    int64_t facts[8];
    uint32_t fmask = 0;
    for (int i = 0; i < c->bits; i++) {
        int64_t bit = (b >> i) & 1;
        facts[i] = SENSOR + 2 * i + bit;
        fmask |= 1u << (2 * i + bit);
    }
    int surprised = (fmask & ~c->predicted) != 0;
    double matched, novel;
    mem_step(c->m, facts, c->bits, fmask, c->max_active, predict, &c->predicted, &matched, &novel);
    return surprised ? (1.0 - matched + novel) / 2.0 : 0.0;
}

static int valid_params(int64_t bits, int64_t max_left, int64_t max_active, int64_t max_contexts) {
    return bits >= 1 && bits <= 8 && max_left >= 0 && max_left < (1LL << 31) && max_active >= 1 && max_contexts >= 0 &&
           max_contexts < (1LL << 31);
}

/* A stream's quantiser and an empty memory; NULL for settings out of range. */
static cad_t *cad_new(int64_t bits, int64_t max_left, int64_t max_active, int64_t max_contexts, double bin_low,
                      double step) {
    if (!valid_params(bits, max_left, max_active, max_contexts)) return NULL;
    cad_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->bits = (int32_t)bits;
    c->bins = (1 << bits) - 1;
    c->max_left = (int32_t)max_left;
    c->max_active = max_active;
    c->max_contexts = max_contexts;
    c->bin_low = bin_low;
    c->step = step;
    c->m = mem_new(c->max_left);
    return c;
}

/* ContextDetector._rebuild: a fresh memory over [bin_low, ...) in steps of step, taught recent[0..n). */
void *wb_cad_build(int64_t bits, int64_t max_left, int64_t max_active, int64_t max_contexts, double bin_low,
                   double step, const double *recent, int64_t n) {
    cad_t *c = cad_new(bits, max_left, max_active, max_contexts, bin_low, step);
    if (!c) return NULL;
    for (int64_t i = 0; i < n; i++) {
        cad_advance(c, recent[i], i == n - 1); /* only the last prediction is ever looked at */
        if (c->m->nctx >= max_contexts / 2) {   /* start afresh from here: no rebuild on every row */
            mem_free(c->m);
            c->m = mem_new(c->max_left);
            c->predicted = 0;
        }
    }
    return c;
}

/* The raw score of value, learned; -1 (nothing learned) when the memory is full and must be rebuilt. */
double wb_cad_advance(void *h, double value) {
    cad_t *c = h;
    if (c->m->nctx >= c->max_contexts) return -1.0;
    return cad_advance(c, value, 1);
}

int64_t wb_cad_size(void *h) { return ((cad_t *)h)->m->nctx; }

void wb_cad_free(void *h) {
    cad_t *c = h;
    if (!c) return;
    mem_free(c->m);
    free(c);
}

/* -- state as words ------------------------------------------------------------------------- */

typedef struct { int64_t *buf; int64_t cap, pos; } writer_t;

static void put(writer_t *w, int64_t x) {
    if (w->pos < w->cap) w->buf[w->pos] = x;
    w->pos++;
}

static int64_t dbits(double x) {
    int64_t v;
    memcpy(&v, &x, sizeof v);
    return v;
}

/* Writes the state into buf (when cap words suffice); returns the words it takes. */
int64_t wb_cad_dump(void *h, int64_t *buf, int64_t cap) {
    const cad_t *c = h;
    const mem_t *m = c->m;
    writer_t w = {buf, cap, 0};
    put(&w, MAGIC);
    put(&w, c->bits);
    put(&w, c->max_left);
    put(&w, c->max_active);
    put(&w, c->max_contexts);
    put(&w, dbits(c->bin_low));
    put(&w, dbits(c->step));
    put(&w, c->predicted);
    put(&w, m->s[0].n);
    put(&w, m->s[1].n);
    put(&w, m->nctx);
    for (int k = 0; k < 2; k++)
        for (int64_t sid = 0; sid < m->s[k].n; sid++) {
            put(&w, m->s[k].len[sid]);
            for (int64_t i = 0; i < m->s[k].len[sid]; i++) put(&w, m->s[k].pool[m->s[k].off[sid] + i]);
        }
    for (int64_t cid = 0; cid < m->nctx; cid++) {
        const ctx_t *x = &m->ctx[cid];
        put(&w, x->sel);
        put(&w, x->mat);
        put(&w, x->act);
        put(&w, x->rid);
        put(&w, x->zflag);
        put(&w, x->hl);
        put(&w, x->hr);
    }
    for (int64_t lid = 0; lid < m->s[0].n; lid++) {
        const lvec *v[2] = {&m->links[lid], &m->zero[lid]};
        for (int k = 0; k < 2; k++) {
            put(&w, v[k]->n);
            for (int64_t i = 0; i < v[k]->n; i++) {
                put(&w, v[k]->a[i].rid);
                put(&w, v[k]->a[i].cid);
            }
        }
    }
    put(&w, m->new_context);
    put(&w, m->ngroup);
    for (int64_t i = 0; i < m->ngroup; i++) put(&w, m->group[i]);
    put(&w, m->nfull);
    for (int64_t i = 0; i < m->nfull; i++) put(&w, m->full[i]);
    put(&w, m->known);
    return w.pos;
}

typedef struct { const int64_t *buf; int64_t n, pos; int bad; } reader_t;

static int64_t get(reader_t *r) {
    if (r->pos >= r->n) {
        r->bad = 1;
        return 0;
    }
    return r->buf[r->pos++];
}

static int64_t get_in(reader_t *r, int64_t lo, int64_t hi) { /* a word in [lo, hi) */
    int64_t x = get(r);
    if (x < lo || x >= hi) r->bad = 1;
    return r->bad ? lo : x;
}

/* Reads facts (sorted, no repeats) into scratch; neurons below n_contexts, right ones sensor facts of bits. */
static int64_t get_facts(reader_t *r, int64_t **scratch, int64_t *cap, int right, int64_t bits, int64_t nctx) {
    int64_t n = get_in(r, 0, r->n - r->pos + 1);
    *scratch = grow(*scratch, cap, n + 1, sizeof **scratch);
    for (int64_t i = 0; i < n && !r->bad; i++) {
        int64_t f = get(r);
        int sensor = f >= SENSOR && f < SENSOR + 2 * bits;
        if (!(sensor || (!right && f >= NEURON && f < NEURON + nctx)) || (i && f <= (*scratch)[i - 1])) r->bad = 1;
        (*scratch)[i] = f;
    }
    return r->bad ? 0 : n;
}

/* The state dumped by wb_cad_dump (or written by the Python memory's packer); NULL when the words are not one. */
void *wb_cad_load(const int64_t *buf, int64_t n) {
    reader_t r = {buf, n, 0, 0};
    if (get(&r) != MAGIC) return NULL;
    int64_t bits = get(&r), max_left = get(&r), max_active = get(&r), max_contexts = get(&r);
    int64_t low = get(&r), step = get(&r), predicted = get(&r);
    int64_t n0 = get_in(&r, 0, 1LL << 31), n1 = get_in(&r, 0, 1LL << 31), nctx = get_in(&r, 0, 1LL << 31);
    if (r.bad || predicted < 0 || predicted >= 1 << 16) return NULL;
    double bin_low, bin_step;
    memcpy(&bin_low, &low, sizeof low);
    memcpy(&bin_step, &step, sizeof step);
    cad_t *c = cad_new(bits, max_left, max_active, max_contexts, bin_low, bin_step);
    if (!c) return NULL;
    c->predicted = (uint32_t)predicted;
    mem_t *m = c->m;
    int64_t *scratch = NULL, cap = 0;
    for (int k = 0; k < 2 && !r.bad; k++) {
        int64_t count = k ? n1 : n0;
        for (int64_t sid = 0; sid < count && !r.bad; sid++) {
            int64_t len = get_facts(&r, &scratch, &cap, k, bits, nctx);
            if (!r.bad && semi(m, k, scratch, len) != sid) r.bad = 1; /* a repeated semi-context */
        }
    }
    free(scratch);
    if (!r.bad && nctx) {
        int64_t need = nctx;
        m->ctx = grow(m->ctx, &m->capctx, need, sizeof *m->ctx);
    }
    for (int64_t cid = 0; cid < nctx && !r.bad; cid++) {
        ctx_t *x = &m->ctx[cid];
        x->sel = get_in(&r, 0, INT64_MAX);
        x->mat = get_in(&r, 0, INT64_MAX);
        x->act = get_in(&r, 0, INT64_MAX);
        x->rid = (int32_t)get_in(&r, 0, n1);
        x->rbits = (uint16_t)m->rmask[x->rid];
        x->zflag = (uint8_t)get_in(&r, 0, 2);
        x->hl = get(&r);
        x->hr = get(&r);
    }
    m->nctx = r.bad ? 0 : nctx;
    for (int64_t lid = 0; lid < n0 && !r.bad; lid++) {
        for (int k = 0; k < 2 && !r.bad; k++) {
            int64_t count = get_in(&r, 0, n1 + 1);
            for (int64_t i = 0; i < count && !r.bad; i++) {
                int32_t rid = (int32_t)get_in(&r, 0, n1), cid = (int32_t)get_in(&r, 0, nctx);
                if (r.bad) break;
                if (k) zero_push(m, (int32_t)lid, rid, cid);
                else lpush(&m->links[lid], rid, cid);
            }
        }
    }
    m->new_context = get_in(&r, -1, nctx);
    int64_t ngroup = get_in(&r, 0, 1LL << 31);
    if (!r.bad) m->group = grow(m->group, &m->capgroup, ngroup + 1, sizeof *m->group);
    for (int64_t i = 0; i < ngroup && !r.bad; i++) m->group[i] = get(&r);
    m->ngroup = r.bad ? 0 : ngroup;
    int64_t nfull = get_in(&r, 0, n0 + 1);
    if (!r.bad) m->full = grow(m->full, &m->capfull, nfull + 1, sizeof *m->full);
    for (int64_t i = 0; i < nfull && !r.bad; i++) m->full[i] = (int32_t)get_in(&r, 0, n0);
    m->nfull = r.bad ? 0 : nfull;
    m->known = get_in(&r, 0, n0 + 1);
    if (r.bad || r.pos != n) {
        wb_cad_free(c);
        return NULL;
    }
    return c;
}
