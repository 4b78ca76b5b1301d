// Function multiversioning: a hot loop compiled for a newer x86-64 level as well as the
// baseline, the copy picked at load time by an ifunc resolver for the CPU it runs on
// (target_clones, GCC and clang).
//
// ThreadSanitizer builds keep the baseline copy only: the resolvers run while the dynamic
// loader relocates the program, before TSan's runtime is initialised, and GCC 12's TSan
// instrumentation of them crashes at start-up. The baseline computes the same values (the
// clones differ in vector width, not in results; see each user), so race checking loses
// nothing.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define MG_TSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MG_TSAN_BUILD 1
#endif
#endif

// The FFT and mel loops: x86-64-v3 (AVX2, FMA) beside the baseline, GCC only (clang's
// target_clones of this form needs a newer clang than Debian's).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(MG_TSAN_BUILD)
#define MG_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MG_SIMD_CLONES
#endif

// Loops that must give the same bits on every CPU: AVX2 without FMA beside the baseline.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(MG_TSAN_BUILD)
#define MG_AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#else
#define MG_AVX2_CLONE
#endif
