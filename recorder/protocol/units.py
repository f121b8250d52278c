"""A power report's raw wire integers in engineering units: the one place each is written.

Each conversion is one division of integers, so the float is the exact quotient, correctly
rounded, and the same raw values always give the same float (and the same text in a point).
Reference: "PV application layer / Power report", corrected by NOTES.md 5 (the current is the
optimizer's input current) and 6 (temperature is signed).
"""

from __future__ import annotations


def voltage_in(raw: int) -> float:
    return raw / 20  # 12 bits, 50 mV steps


def voltage_out(raw: int) -> float:
    return raw / 10  # 12 bits, 100 mV steps


def current_in(raw: int) -> float:
    return raw / 200  # 12 bits, 5 mA steps


def duty_cycle(raw: int) -> float:
    return raw / 255  # 8 bits, 255 = 100 %


def temperature(raw: int) -> float:
    return raw / 10  # sign-extended 12 bits, 0.1 °C steps


def power(voltage_in_raw: int, current_in_raw: int) -> float:
    """Input power, Vin × Iin. (Vout × I under-reports a bucking, shaded panel.)"""
    return voltage_in_raw * current_in_raw / 4000  # (raw/20 V) × (raw/200 A), one division


def current_out(current_in_raw: int, duty_cycle_raw: int) -> float | None:
    """Estimated output current Iin / duty; None when the duty cycle is zero."""
    if duty_cycle_raw == 0:
        return None
    return current_in_raw * 255 / (200 * duty_cycle_raw)
