"""Tests in a real headless browser (Chromium from the machine's packages, driven by Selenium)."""
