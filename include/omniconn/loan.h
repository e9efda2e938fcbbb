// Loan: writable transport memory handed out by Connector::loan, for the zero-copy write path
// (loan -> write the payload in place -> Connector::commit or send_loan).
#pragma once

#include <cstddef>
#include <memory>
#include <span>

namespace omniconn {

// Exactly `size()` bytes of a connector's transport memory. Write a payload into it
// (PayloadBuilder::write_to, or write_layout and fill the tensors), then commit or send it.
// A loan dropped without commit gives its space back. A loan must not outlive the connector
// that made it.
class Loan {
 public:
  // What a connector puts behind a loan; its destructor returns uncommitted space.
  class Impl {
   public:
    virtual ~Impl() = default;
    virtual std::span<std::byte> bytes() = 0;
  };

  Loan() = default;
  explicit Loan(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
  Loan(Loan&&) noexcept = default;
  Loan& operator=(Loan&&) noexcept = default;

  bool valid() const { return impl_ != nullptr; }
  std::span<std::byte> bytes() { return impl_ ? impl_->bytes() : std::span<std::byte>(); }
  size_t size() { return bytes().size(); }
  // The connector's own object (a connector checks that a loan is one of its own).
  Impl* impl() { return impl_.get(); }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace omniconn
