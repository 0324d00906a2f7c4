// Errors as values for the coordinator's state: an error kind a caller can branch on, plus a
// one-line message a person can act on. Result<T> holds either a T or an Error.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace knit::coordinator {

enum class Errc {
  not_found,     // no such token, node or relay
  conflict,      // the change contradicts the stored state (e.g. the mesh prefix is fixed)
  invalid,       // a malformed argument (prefix, name, duration)
  mesh_full,     // no free address left in the mesh's IPv4 prefix
  newer_schema,  // the database was written by a newer coordinator
  io,            // the database or a state file could not be read or written
};

struct Error {
  Errc code;
  std::string message;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : state_(std::move(error)) {}  // NOLINT

  explicit operator bool() const { return state_.index() == 0; }
  bool ok() const { return state_.index() == 0; }
  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  // By value from a temporary, so `for (auto& n : *store.list_nodes())` does not dangle.
  T value() && { return std::get<0>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, Error> state_;
};

// Result<void>: success carries nothing.
struct Ok {};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Ok) {}  // NOLINT
  Result(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT

  explicit operator bool() const { return !failed_; }
  bool ok() const { return !failed_; }
  const Error& error() const { return error_; }

 private:
  Error error_{Errc::io, {}};
  bool failed_ = false;
};

}  // namespace knit::coordinator
