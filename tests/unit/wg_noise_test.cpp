// The generic Noise core: IKpsk2 against the cacophony vector byte for byte (both handshake
// messages, the four transport messages after them, the handshake hash), and plain IK.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "wg/crypto.hpp"
#include "wg/noise.hpp"

namespace knit::wg::noise {
namespace {

Bytes hex(const nlohmann::json& value) {
  auto bytes = from_hex(value.get<std::string>());
  EXPECT_TRUE(bytes);
  return bytes.value_or(Bytes{});
}

template <std::size_t N>
Secret<N> secret_from(const nlohmann::json& value) {
  const Bytes bytes = hex(value);
  EXPECT_EQ(bytes.size(), N);
  Secret<N> out;
  if (bytes.size() == N) out.assign(std::span<const std::uint8_t, N>(bytes.data(), N));
  return out;
}

PublicKey public_from(const nlohmann::json& value) {
  PublicKey out{};
  EXPECT_TRUE(from_hex_into(value.get<std::string>(), out));
  return out;
}

ByteSpan text(std::string_view s) {
  return ByteSpan(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

class Cacophony : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ifstream in(std::string(KNIT_VECTORS_DIR) + "/noise_ikpsk2_cacophony.json");
    ASSERT_TRUE(in.good());
    v_ = nlohmann::json::parse(in);
    name_ = v_["protocol_name"].get<std::string>();
    init_prologue_ = hex(v_["init_prologue"]);
    resp_prologue_ = hex(v_["resp_prologue"]);
    ASSERT_EQ(v_["messages"].size(), 6u);
  }

  IkProtocol init_protocol() const { return {name_, init_prologue_, true}; }
  IkProtocol resp_protocol() const { return {name_, resp_prologue_, true}; }

  nlohmann::json v_;
  std::string name_;
  Bytes init_prologue_;
  Bytes resp_prologue_;
};

TEST_F(Cacophony, IKpsk2HandshakeAndTransportByteForByte) {
  ASSERT_EQ(name_, "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s");
  const auto init_s = secret_from<32>(v_["init_static"]);
  const auto init_e = secret_from<32>(v_["init_ephemeral"]);
  const auto init_psk = secret_from<32>(v_["init_psks"][0]);
  const PublicKey init_rs = public_from(v_["init_remote_static"]);
  const auto resp_s = secret_from<32>(v_["resp_static"]);
  const auto resp_e = secret_from<32>(v_["resp_ephemeral"]);
  const auto resp_psk = secret_from<32>(v_["resp_psks"][0]);
  const auto& messages = v_["messages"];

  IkHandshake initiator;
  IkHandshake responder;
  ASSERT_EQ(initiator.start_initiator(init_protocol(), init_s, crypto::public_key_of(init_s),
                                      init_rs, &init_psk),
            NoiseError::ok);
  responder.start_responder(resp_protocol(), resp_s, crypto::public_key_of(resp_s), &resp_psk);

  // -> e, es, s, ss
  {
    const Bytes payload = hex(messages[0]["payload"]);
    Bytes msg(IkHandshake::message1_size(payload.size()));
    ASSERT_EQ(initiator.write_message1(msg, init_e, payload), NoiseError::ok);
    EXPECT_EQ(to_hex(msg), messages[0]["ciphertext"].get<std::string>());
    Bytes got(payload.size());
    ASSERT_EQ(responder.read_message1(got, msg), NoiseError::ok);
    EXPECT_EQ(got, payload);
    EXPECT_EQ(responder.remote_static(), crypto::public_key_of(init_s));
  }
  // <- e, ee, se, psk
  {
    const Bytes payload = hex(messages[1]["payload"]);
    Bytes msg(IkHandshake::message2_size(payload.size()));
    ASSERT_EQ(responder.write_message2(msg, resp_e, payload), NoiseError::ok);
    EXPECT_EQ(to_hex(msg), messages[1]["ciphertext"].get<std::string>());
    Bytes got(payload.size());
    ASSERT_EQ(initiator.read_message2(got, msg), NoiseError::ok);
    EXPECT_EQ(got, payload);
  }
  EXPECT_EQ(to_hex(initiator.handshake_hash().span()), v_["handshake_hash"].get<std::string>());
  EXPECT_EQ(to_hex(responder.handshake_hash().span()), v_["handshake_hash"].get<std::string>());

  CipherState i_send, i_recv, r_send, r_recv;
  ASSERT_EQ(initiator.split(i_send, i_recv), NoiseError::ok);
  ASSERT_EQ(responder.split(r_send, r_recv), NoiseError::ok);
  // Transport: messages alternate, initiator first.
  for (std::size_t i = 2; i < messages.size(); ++i) {
    const bool from_initiator = i % 2 == 0;
    CipherState& sender = from_initiator ? i_send : r_send;
    CipherState& receiver = from_initiator ? r_recv : i_recv;
    const Bytes payload = hex(messages[i]["payload"]);
    Bytes msg(payload.size() + kTagSize);
    ASSERT_EQ(sender.encrypt_with_ad(msg, {}, payload), NoiseError::ok);
    EXPECT_EQ(to_hex(msg), messages[i]["ciphertext"].get<std::string>()) << "message " << i;
    Bytes got(payload.size());
    ASSERT_EQ(receiver.decrypt_with_ad(got, {}, msg), NoiseError::ok);
    EXPECT_EQ(got, payload);
  }
  EXPECT_EQ(i_send.nonce(), 2u);
  EXPECT_EQ(r_recv.nonce(), 2u);
}

TEST_F(Cacophony, ResumedResponderWritesTheSameMessage2) {
  // WireGuard's responder reads message 1 before it knows the peer, keeps (ck, h, rs, re)
  // and resumes later with the peer's psk: it must produce the very same bytes.
  const auto init_s = secret_from<32>(v_["init_static"]);
  const auto init_e = secret_from<32>(v_["init_ephemeral"]);
  const auto psk = secret_from<32>(v_["init_psks"][0]);
  const auto resp_s = secret_from<32>(v_["resp_static"]);
  const auto resp_e = secret_from<32>(v_["resp_ephemeral"]);
  const PublicKey resp_pub = crypto::public_key_of(resp_s);
  const auto& messages = v_["messages"];

  IkHandshake initiator;
  ASSERT_EQ(initiator.start_initiator(init_protocol(), init_s, crypto::public_key_of(init_s),
                                      resp_pub, &psk),
            NoiseError::ok);
  const Bytes p1 = hex(messages[0]["payload"]);
  Bytes m1(IkHandshake::message1_size(p1.size()));
  ASSERT_EQ(initiator.write_message1(m1, init_e, p1), NoiseError::ok);

  IkHandshake reader;
  reader.start_responder(resp_protocol(), resp_s, resp_pub);  // no psk known yet
  Bytes got1(p1.size());
  ASSERT_EQ(reader.read_message1(got1, m1), NoiseError::ok);

  IkHandshake resumed;
  resumed.resume_responder(resp_protocol(), resp_s, resp_pub, reader.remote_static(),
                           reader.remote_ephemeral(), reader.chaining_key(),
                           reader.handshake_hash());
  resumed.set_psk(psk);
  const Bytes p2 = hex(messages[1]["payload"]);
  Bytes m2(IkHandshake::message2_size(p2.size()));
  ASSERT_EQ(resumed.write_message2(m2, resp_e, p2), NoiseError::ok);
  EXPECT_EQ(to_hex(m2), messages[1]["ciphertext"].get<std::string>());
}

TEST_F(Cacophony, PrecomputedStaticStaticGivesTheSameMessage1) {
  const auto init_s = secret_from<32>(v_["init_static"]);
  const auto init_e = secret_from<32>(v_["init_ephemeral"]);
  const auto psk = secret_from<32>(v_["init_psks"][0]);
  const PublicKey rs = public_from(v_["init_remote_static"]);
  SymmetricKey ss;
  ASSERT_TRUE(crypto::dh(ss, init_s, rs));
  IkHandshake initiator;
  ASSERT_EQ(initiator.start_initiator(init_protocol(), init_s, crypto::public_key_of(init_s), rs,
                                      &psk, &ss),
            NoiseError::ok);
  const Bytes p1 = hex(v_["messages"][0]["payload"]);
  Bytes m1(IkHandshake::message1_size(p1.size()));
  ASSERT_EQ(initiator.write_message1(m1, init_e, p1), NoiseError::ok);
  EXPECT_EQ(to_hex(m1), v_["messages"][0]["ciphertext"].get<std::string>());

  SymmetricKey zero;
  EXPECT_EQ(initiator.start_initiator(init_protocol(), init_s, crypto::public_key_of(init_s), rs,
                                      &psk, &zero),
            NoiseError::bad_key);
}

TEST_F(Cacophony, TamperedMessagesFailAndLeaveTheStateUsable) {
  const auto init_s = secret_from<32>(v_["init_static"]);
  const auto init_e = secret_from<32>(v_["init_ephemeral"]);
  const auto psk = secret_from<32>(v_["init_psks"][0]);
  const auto resp_s = secret_from<32>(v_["resp_static"]);
  const auto resp_e = secret_from<32>(v_["resp_ephemeral"]);
  const PublicKey resp_pub = crypto::public_key_of(resp_s);

  IkHandshake initiator;
  ASSERT_EQ(initiator.start_initiator(init_protocol(), init_s, crypto::public_key_of(init_s),
                                      resp_pub, &psk),
            NoiseError::ok);
  Bytes m1(IkHandshake::message1_size(0));
  ASSERT_EQ(initiator.write_message1(m1, init_e, {}), NoiseError::ok);

  IkHandshake responder;
  responder.start_responder(resp_protocol(), resp_s, resp_pub, &psk);
  for (std::size_t i = 32; i < m1.size(); ++i) {  // flipping e's bits changes the DH: also fails
    Bytes bad = m1;
    bad[i] ^= 0x04;
    EXPECT_EQ(responder.read_message1({}, bad), NoiseError::decrypt_failed) << i;
  }
  EXPECT_EQ(responder.read_message1({}, ByteSpan(m1).first(m1.size() - 1)), NoiseError::bad_size);
  ASSERT_EQ(responder.read_message1({}, m1), NoiseError::ok);

  Bytes m2(IkHandshake::message2_size(0));
  ASSERT_EQ(responder.write_message2(m2, resp_e, {}), NoiseError::ok);
  for (std::size_t i = 0; i < m2.size(); ++i) {
    Bytes bad = m2;
    bad[i] ^= 0x10;
    const auto err = initiator.read_message2({}, bad);
    EXPECT_TRUE(err == NoiseError::decrypt_failed || err == NoiseError::bad_key) << i;
  }
  EXPECT_EQ(initiator.read_message2({}, m2), NoiseError::ok);
}

TEST_F(Cacophony, WrongPskFails) {
  const auto init_s = secret_from<32>(v_["init_static"]);
  const auto init_e = secret_from<32>(v_["init_ephemeral"]);
  const auto psk = secret_from<32>(v_["init_psks"][0]);
  const auto resp_s = secret_from<32>(v_["resp_static"]);
  const auto resp_e = secret_from<32>(v_["resp_ephemeral"]);
  const PublicKey resp_pub = crypto::public_key_of(resp_s);
  IkHandshake initiator;
  ASSERT_EQ(initiator.start_initiator(init_protocol(), init_s, crypto::public_key_of(init_s),
                                      resp_pub, &psk),
            NoiseError::ok);
  Bytes m1(IkHandshake::message1_size(0));
  ASSERT_EQ(initiator.write_message1(m1, init_e, {}), NoiseError::ok);
  IkHandshake responder;
  responder.start_responder(resp_protocol(), resp_s, resp_pub);  // psk = zeros
  ASSERT_EQ(responder.read_message1({}, m1), NoiseError::ok);    // psk2: message 1 is unaffected
  Bytes m2(IkHandshake::message2_size(0));
  ASSERT_EQ(responder.write_message2(m2, resp_e, {}), NoiseError::ok);
  EXPECT_EQ(initiator.read_message2({}, m2), NoiseError::decrypt_failed);
}

// Plain IK, as the control channel will use it: no psk, "e" does not mix the key.
TEST(NoiseIk, RoundTripWithoutPsk) {
  SeededRandom rng(11);
  const PrivateKey is = crypto::generate_private_key(rng);
  const PrivateKey rs = crypto::generate_private_key(rng);
  const PublicKey rs_pub = crypto::public_key_of(rs);
  const IkProtocol protocol{"Noise_IK_25519_ChaChaPoly_BLAKE2s", text("knit control v1"), false};

  IkHandshake initiator;
  IkHandshake responder;
  ASSERT_EQ(initiator.start_initiator(protocol, is, crypto::public_key_of(is), rs_pub),
            NoiseError::ok);
  responder.start_responder(protocol, rs, rs_pub);

  const Bytes hello = {'h', 'i'};
  Bytes m1(IkHandshake::message1_size(hello.size()));
  ASSERT_EQ(initiator.write_message1(m1, crypto::generate_private_key(rng), hello),
            NoiseError::ok);
  Bytes got1(hello.size());
  ASSERT_EQ(responder.read_message1(got1, m1), NoiseError::ok);
  EXPECT_EQ(got1, hello);
  EXPECT_EQ(responder.remote_static(), crypto::public_key_of(is));

  Bytes m2(IkHandshake::message2_size(0));
  ASSERT_EQ(responder.write_message2(m2, crypto::generate_private_key(rng), {}), NoiseError::ok);
  ASSERT_EQ(initiator.read_message2({}, m2), NoiseError::ok);
  EXPECT_EQ(to_hex(initiator.handshake_hash().span()), to_hex(responder.handshake_hash().span()));

  CipherState i_send, i_recv, r_send, r_recv;
  ASSERT_EQ(initiator.split(i_send, i_recv), NoiseError::ok);
  ASSERT_EQ(responder.split(r_send, r_recv), NoiseError::ok);
  EXPECT_EQ(to_hex(i_send.key().span()), to_hex(r_recv.key().span()));
  EXPECT_EQ(to_hex(i_recv.key().span()), to_hex(r_send.key().span()));
  EXPECT_NE(to_hex(i_send.key().span()), to_hex(i_recv.key().span()));

  // In place, both directions.
  Bytes buffer = {'p', 'i', 'n', 'g', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  ASSERT_EQ(i_send.encrypt_with_ad(buffer, {}, ByteSpan(buffer).first(4)), NoiseError::ok);
  ASSERT_EQ(r_recv.decrypt_with_ad(MutableByteSpan(buffer).first(4), {}, buffer), NoiseError::ok);
  EXPECT_EQ(Bytes(buffer.begin(), buffer.begin() + 4), (Bytes{'p', 'i', 'n', 'g'}));

  // The same handshake under another protocol name does not interoperate.
  IkHandshake other;
  other.start_responder({"Noise_IK_25519_ChaChaPoly_BLAKE2s", text("other prologue"), false}, rs,
                        rs_pub);
  EXPECT_EQ(other.read_message1(got1, m1), NoiseError::decrypt_failed);
}

TEST(NoiseIk, StepsOutOfOrderAreWrongState) {
  SeededRandom rng(12);
  const PrivateKey s = crypto::generate_private_key(rng);
  const PublicKey pub = crypto::public_key_of(s);
  const IkProtocol protocol{"Noise_IK_25519_ChaChaPoly_BLAKE2s", {}, false};
  IkHandshake idle;
  Bytes m1(IkHandshake::message1_size(0));
  Bytes m2(IkHandshake::message2_size(0));
  CipherState a, b;
  EXPECT_EQ(idle.write_message1(m1, s, {}), NoiseError::wrong_state);
  EXPECT_EQ(idle.read_message1({}, m1), NoiseError::wrong_state);
  EXPECT_EQ(idle.split(a, b), NoiseError::wrong_state);

  IkHandshake initiator;
  ASSERT_EQ(initiator.start_initiator(protocol, s, pub, pub), NoiseError::ok);
  EXPECT_EQ(initiator.read_message1({}, m1), NoiseError::wrong_state);
  EXPECT_EQ(initiator.write_message2(m2, s, {}), NoiseError::wrong_state);
  EXPECT_EQ(initiator.read_message2({}, m2), NoiseError::wrong_state);
  Bytes too_long(m1.size() + 1);
  EXPECT_EQ(initiator.write_message1(too_long, s, {}), NoiseError::bad_size);
  ASSERT_EQ(initiator.write_message1(m1, crypto::generate_private_key(rng), {}), NoiseError::ok);
  EXPECT_EQ(initiator.write_message1(m1, s, {}), NoiseError::wrong_state);
  EXPECT_EQ(initiator.split(a, b), NoiseError::wrong_state);

  initiator.clear();
  EXPECT_TRUE(initiator.is_zeroed());
}

TEST(NoiseIk, LowOrderEphemeralIsBadKey) {
  SeededRandom rng(13);
  const PrivateKey s = crypto::generate_private_key(rng);
  const PublicKey pub = crypto::public_key_of(s);
  IkHandshake responder;
  responder.start_responder({"Noise_IK_25519_ChaChaPoly_BLAKE2s", {}, false}, s, pub);
  Bytes m1(IkHandshake::message1_size(0));  // e = the all-zero point
  EXPECT_EQ(responder.read_message1({}, m1), NoiseError::bad_key);
}

TEST(CipherStateTest, NonceAdvancesAndStopsBeforeTheReservedMaximum) {
  SymmetricKey key;
  SeededRandom(5).fill(key.span());
  CipherState c;
  EXPECT_FALSE(c.has_key());
  Bytes same = {1, 2, 3};
  Bytes out(3);
  ASSERT_EQ(c.encrypt_with_ad(out, {}, same), NoiseError::ok);  // no key: pass-through
  EXPECT_EQ(out, same);

  c.initialize_key(key);
  Bytes sealed(19);
  ASSERT_EQ(c.encrypt_with_ad(sealed, {}, same), NoiseError::ok);
  EXPECT_EQ(c.nonce(), 1u);
  c.set_nonce(~std::uint64_t{0});
  EXPECT_EQ(c.encrypt_with_ad(sealed, {}, same), NoiseError::nonce_exhausted);

  CipherState d;
  d.initialize_key(key);
  Bytes opened(3);
  Bytes tampered = sealed;
  c.set_nonce(0);
  ASSERT_EQ(c.encrypt_with_ad(sealed, {}, same), NoiseError::ok);
  tampered = sealed;
  tampered[0] ^= 1;
  EXPECT_EQ(d.decrypt_with_ad(opened, {}, tampered), NoiseError::decrypt_failed);
  EXPECT_EQ(d.nonce(), 0u);  // a failure does not consume the nonce
  ASSERT_EQ(d.decrypt_with_ad(opened, {}, sealed), NoiseError::ok);
  EXPECT_EQ(opened, same);

  const std::string before = to_hex(c.key().span());
  c.rekey();
  EXPECT_NE(to_hex(c.key().span()), before);
}

}  // namespace
}  // namespace knit::wg::noise
