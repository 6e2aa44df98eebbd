/* What the removed asymmetric eventcount barrier would cost others (README, "Why both
 * eventcount fences are real fences"). Process A, registered for expedited global
 * membarriers as every shmcast process was, busy-spins on CPU 0 timing each iteration of a
 * clock-read loop; process B, on CPU 1, issues membarrier(GLOBAL_EXPEDITED) about 1,000
 * times a second (what a sleeping consumer did before each futex wait), or does nothing.
 * Rounds alternate with and without B's barriers; A reports the p50/p99/p99.9/max of its
 * iteration gaps. Also times the barrier itself and one fence(SeqCst) (mfence).
 *
 *   cc -O2 -o /tmp/membarrier_jitter bench/c/membarrier_jitter.c && /tmp/membarrier_jitter
 */
#define _GNU_SOURCE
#include <linux/membarrier.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}
static int membarrier(int cmd) { return (int)syscall(SYS_membarrier, cmd, 0, 0); }
static void pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  sched_setaffinity(0, sizeof s, &s);
}
static int cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

enum { SAMPLES = 2000000, ROUNDS = 9 }; /* round 0 is a warm-up */

static void spin_round(uint64_t *gaps, const char *what) {
  uint64_t prev = now();
  for (int i = 0; i < SAMPLES; i++) {
    uint64_t t = now();
    gaps[i] = t - prev;
    prev = t;
  }
  qsort(gaps, SAMPLES, sizeof gaps[0], cmp);
  printf("%-34s p50 %5lu ns  p99 %5lu ns  p99.9 %6lu ns  max %8lu ns\n", what,
         (unsigned long)gaps[SAMPLES / 2], (unsigned long)gaps[SAMPLES * 99 / 100],
         (unsigned long)gaps[SAMPLES * 999 / 1000], (unsigned long)gaps[SAMPLES - 1]);
}

int main(void) {
  int q = membarrier(MEMBARRIER_CMD_QUERY);
  if (q < 0 || !(q & MEMBARRIER_CMD_GLOBAL_EXPEDITED)) {
    puts("membarrier(GLOBAL_EXPEDITED) not available here");
    return 0;
  }
  if (membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0) {
    perror("register");
    return 1;
  }
  /* Cost of the barrier itself and of one mfence, on CPU 1. */
  pin(1);
  enum { N = 20000, F = 10000000 };
  uint64_t t = now();
  for (int i = 0; i < N; i++) membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);
  printf("membarrier(GLOBAL_EXPEDITED): %.0f ns per call (mean of %d)\n",
         (double)(now() - t) / N, N);
  static _Atomic uint64_t w;
  t = now();
  for (uint64_t i = 0; i < F; i++) {
    atomic_store_explicit(&w, i, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
  }
  double fenced = (double)(now() - t) / F;
  t = now();
  for (uint64_t i = 0; i < F; i++) {
    atomic_store_explicit(&w, i, memory_order_release);
    atomic_signal_fence(memory_order_seq_cst);
  }
  printf("store + fence(SeqCst): %.2f ns, store + compiler fence: %.2f ns (mean of %d)\n\n",
         fenced, (double)(now() - t) / F, F);

  uint64_t *gaps = malloc(sizeof(uint64_t) * SAMPLES);
  for (int r = 0; r < ROUNDS; r++) {
    int with = r > 0 && r % 2 == 0;
    pid_t b = -1;
    if (with) {
      b = fork();
      if (b == 0) {
        pin(1);
        for (;;) {
          membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);
          usleep(1000);
        }
      }
    }
    pin(0);
    usleep(20000);
    spin_round(gaps, r == 0 ? "(warm-up) A spinning, B idle" : with ? "A spinning, B: 1,000 membarriers/s" : "A spinning, B idle");
    if (with) {
      kill(b, SIGKILL);
      waitpid(b, NULL, 0);
    }
  }
  return 0;
}
