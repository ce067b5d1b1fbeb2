// RunAsync runs `work` on the libuv thread pool and settles a promise on the main thread: resolved
// with done(env, result), or rejected with the JS Error of the am::Failure that `work` threw.
// `work` must not touch JS values; `done` must not block.
#pragma once

#include <napi.h>

#include <exception>
#include <functional>
#include <string>
#include <utility>

#include "errors.h"

namespace am {

template <typename R>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<R()>;
  using Done = std::function<Napi::Value(Napi::Env, R&)>;

  PromiseWorker(Napi::Env env, const char* name, Work work, Done done)
      : Napi::AsyncWorker(env, name),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        done_(std::move(done)),
        name_(name) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      result_ = work_();
    } catch (const Failure& f) {
      failure_ = f;
      SetError(f.message);
    } catch (const std::exception& e) {
      failure_ = PlainFailure(name_, e.what());
      SetError(failure_.message);
    }
  }

  void OnOK() override {
    try {
      deferred_.Resolve(done_(Env(), result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

  void OnError(const Napi::Error&) override { deferred_.Reject(ToJsError(Env(), failure_).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::string name_;
  R result_{};
  Failure failure_;
};

// Empty is the result type of operations that resolve with undefined.
struct Empty {};

template <typename R>
Napi::Promise RunAsync(Napi::Env env, const char* name, typename PromiseWorker<R>::Work work,
                       typename PromiseWorker<R>::Done done) {
  auto* w = new PromiseWorker<R>(env, name, std::move(work), std::move(done));
  Napi::Promise p = w->Promise();
  w->Queue();  // the worker deletes itself after settling
  return p;
}

inline Napi::Value Undefined(Napi::Env env, Empty&) { return env.Undefined(); }

}  // namespace am
