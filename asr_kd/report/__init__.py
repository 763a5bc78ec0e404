"""asr_kd.report"""
