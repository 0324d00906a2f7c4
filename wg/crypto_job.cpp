#include "wg/crypto_job.hpp"

#include "wg/constants.hpp"
#include "wg/crypto.hpp"

namespace knit::wg {

void run_crypto(CryptoJob& job) {
  if (job.kind == CryptoJob::Kind::seal) {
    crypto::aead_encrypt(MutableByteSpan(job.body, job.size + kAuthTagSize), ByteSpan(job.body, job.size),
                         job.counter, *job.key, {});
    job.ok = true;
    return;
  }
  job.ok = crypto::aead_decrypt(MutableByteSpan(job.body, job.size - kAuthTagSize), ByteSpan(job.body, job.size),
                                job.counter, *job.key, {});
}

}  // namespace knit::wg
