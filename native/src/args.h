// Argument checks for exported functions: each throws a JS TypeError naming the argument.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace am {

inline std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString())
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

inline uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name, uint32_t max = UINT32_MAX) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= max) || d != static_cast<double>(static_cast<uint64_t>(d)))
    throw Napi::TypeError::New(info.Env(),
                               std::string(name) + " must be an integer from 0 to " + std::to_string(max));
  return static_cast<uint32_t>(d);
}

// ArgBytes copies a Buffer/Uint8Array argument whose length is within [minLen, maxLen].
inline std::vector<uint8_t> ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* name, size_t minLen,
                                     size_t maxLen) {
  if (info.Length() <= i || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a Buffer or Uint8Array");
  auto a = info[i].As<Napi::Uint8Array>();
  if (a.ByteLength() < minLen || a.ByteLength() > maxLen) {
    std::string range = minLen == maxLen ? std::to_string(minLen)
                                         : std::to_string(minLen) + " to " + std::to_string(maxLen);
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be " + range + " bytes, got " +
                                               std::to_string(a.ByteLength()));
  }
  return std::vector<uint8_t>(a.Data(), a.Data() + a.ByteLength());
}

// ArgPcrIndices reads a non-empty array of distinct PCR indices 0-23.
inline std::vector<uint32_t> ArgPcrIndices(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsArray())
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be an array of PCR indices");
  auto arr = info[i].As<Napi::Array>();
  if (arr.Length() == 0) throw Napi::TypeError::New(info.Env(), std::string(name) + " must not be empty");
  std::vector<uint32_t> out;
  uint32_t seen = 0;
  for (uint32_t k = 0; k < arr.Length(); k++) {
    Napi::Value v = arr.Get(k);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= 23) || d != static_cast<double>(static_cast<uint32_t>(d)))
      throw Napi::TypeError::New(info.Env(), std::string(name) + " must hold integers from 0 to 23");
    uint32_t idx = static_cast<uint32_t>(d);
    if (seen & (1u << idx))
      throw Napi::TypeError::New(info.Env(), std::string(name) + " lists PCR " + std::to_string(idx) + " twice");
    seen |= 1u << idx;
    out.push_back(idx);
  }
  return out;
}

}  // namespace am
